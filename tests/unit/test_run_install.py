"""`./run`'s install(): `./run up` and `./run fleet` install the runtime alone (`-e .`), the
developers' commands (test, lint, docs, bench) the dev extras too; .venv/.installed records
which, so each command installs only what is missing. Run on the script's own functions (./run
sourced), with a stand-in venv whose python (and uv) records the commands it is given."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

RUN = Path(__file__).resolve().parents[2] / "run"
PIP = "-m pip install -q --disable-pip-version-check"


def call(work: Path, which: str, installer: str = "pip") -> list[str]:
    """install(which) in work with ``installer``; the commands it ran, one line each."""
    log = work / "pip.log"
    log.write_text("")
    script = f"source {shlex.quote(str(RUN))}\ncd {shlex.quote(str(work))}\ninstall {which}\n"
    env = {**os.environ, "FLEET_INSTALLER": installer}
    env.pop("PYTHON", None)
    subprocess.run(["bash", "-c", script], check=True, timeout=30, capture_output=True,
                   env=env)  # fmt: skip
    return log.read_text().splitlines()


def make(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    bin_ = tmp_path / ".venv" / "bin"
    bin_.mkdir(parents=True)
    for name in ("python", "uv"):
        (bin_ / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {tmp_path / "pip.log"}\n')
        (bin_ / name).chmod(0o755)
    return tmp_path


def test_up_installs_the_runtime_alone_and_test_adds_the_dev_extras(tmp_path: Path) -> None:
    work = make(tmp_path)
    assert call(work, "run") == [f"python {PIP} -e ."]
    assert call(work, "run") == []
    assert call(work, "dev") == [f"python {PIP} -e .[dev]"]
    assert call(work, "dev") == []
    assert call(work, "run") == []  # the dev set holds the runtime
    assert (work / ".venv" / ".installed").read_text().split()[1] == "dev"


def test_a_changed_pyproject_reinstalls_the_set_the_venv_has(tmp_path: Path) -> None:
    work = make(tmp_path)
    call(work, "dev")
    (work / "pyproject.toml").write_text("[project]\nname = 'y'\n")
    assert call(work, "run") == [f"python {PIP} -e .[dev]"]
    (work / ".venv" / ".installed").unlink()
    (work / "pyproject.toml").write_text("[project]\nname = 'z'\n")
    assert call(work, "run") == [f"python {PIP} -e ."]


def test_uv_installs_when_there_is_one(tmp_path: Path) -> None:
    """The venv's uv (pip installs it there first when no uv is on PATH) does the install."""
    work = make(tmp_path)
    assert call(work, "run", installer="uv") == ["uv pip install -q --python .venv/bin/python -e ."]


def test_a_marker_of_a_hash_alone_means_the_dev_set(tmp_path: Path) -> None:
    work = make(tmp_path)
    call(work, "dev")
    marker = work / ".venv" / ".installed"
    marker.write_text(marker.read_text().split()[0] + "\n")  # written before the sets existed
    assert call(work, "dev") == []


def test_each_command_asks_for_its_set() -> None:
    text = RUN.read_text()
    wants = dict(re.findall(r"^  (\w+)\)\s+(?:need_\w+[^;]*; )*install (\w+)", text, re.M))
    assert wants == {"up": "run", "fleet": "run", "test": "dev", "lint": "dev",
                     "docs": "dev", "bench": "dev"}  # fmt: skip
