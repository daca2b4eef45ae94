"""`./run`'s install(): `./run up` and `./run fleet` install the runtime alone (`-e .`), the
developers' commands (test, lint, docs, bench) the dev extras too; .venv/.installed records
which, so each command installs only what is missing. Run on the script's own function, with a
stand-in venv whose python records the pip commands it is given."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

RUN = Path(__file__).resolve().parents[2] / "run"


def install_function() -> str:
    text = RUN.read_text()
    found = re.search(r"^install\(\) \{\n.*?^\}\n", text, re.M | re.S)
    assert found, "./run has no install() function"
    return found.group(0)


def call(work: Path, which: str) -> list[str]:
    """install(which) in work; the pip commands it ran, one line each."""
    log = work / "pip.log"
    log.write_text("")
    script = f"set -euo pipefail\nvenv=.venv\n{install_function()}\ninstall {which}\n"
    subprocess.run(["bash", "-c", script], cwd=work, check=True, timeout=30,
                   capture_output=True)  # fmt: skip
    return log.read_text().splitlines()


def make(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    bin_ = tmp_path / ".venv" / "bin"
    bin_.mkdir(parents=True)
    python = bin_ / "python"
    python.write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "pip.log"}\n')
    python.chmod(0o755)
    return tmp_path


def test_up_installs_the_runtime_alone_and_test_adds_the_dev_extras(tmp_path: Path) -> None:
    work = make(tmp_path)
    assert call(work, "run") == ["-m pip install -q --disable-pip-version-check -e ."]
    assert call(work, "run") == []
    assert call(work, "dev") == ["-m pip install -q --disable-pip-version-check -e .[dev]"]
    assert call(work, "dev") == []
    assert call(work, "run") == []  # the dev set holds the runtime
    assert (work / ".venv" / ".installed").read_text().split()[1] == "dev"


def test_a_changed_pyproject_reinstalls_the_set_the_venv_has(tmp_path: Path) -> None:
    work = make(tmp_path)
    call(work, "dev")
    (work / "pyproject.toml").write_text("[project]\nname = 'y'\n")
    assert call(work, "run") == ["-m pip install -q --disable-pip-version-check -e .[dev]"]
    (work / ".venv" / ".installed").unlink()
    (work / "pyproject.toml").write_text("[project]\nname = 'z'\n")
    assert call(work, "run") == ["-m pip install -q --disable-pip-version-check -e ."]


def test_a_marker_of_a_hash_alone_means_the_dev_set(tmp_path: Path) -> None:
    work = make(tmp_path)
    call(work, "dev")
    marker = work / ".venv" / ".installed"
    marker.write_text(marker.read_text().split()[0] + "\n")  # written before the sets existed
    assert call(work, "dev") == []


def test_each_command_asks_for_its_set() -> None:
    text = RUN.read_text()
    wants = dict(re.findall(r"^  (\w+)\)\s+install (\w+)", text, re.M))
    assert wants == {"up": "run", "fleet": "run", "test": "dev", "lint": "dev",
                     "docs": "dev", "bench": "dev"}  # fmt: skip
