"""One command regenerates every file made from contracts/ (``python -m codegen``), and its
``--check`` names each stale file: the committed tree passes it, and every generator's file is
in its list."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

import codegen
from codegen.files import GENERATED
from codegen.generated import REGENERATE, REPO, Generated, main, write


def test_the_committed_tree_passes_the_one_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check"], GENERATED) == 0, capsys.readouterr().err


def test_every_generator_s_file_is_in_the_one_list() -> None:
    """A generator whose file the list forgot would never be checked."""
    listed = {f.path for f in GENERATED}
    declared: set[Path] = set()
    for info in pkgutil.iter_modules(codegen.__path__):
        module = importlib.import_module(f"codegen.{info.name}")
        declared |= {v for v in vars(module).values() if isinstance(v, Path) and v != REPO}
    assert declared == listed
    assert all(path.is_relative_to(REPO) for path in listed)


def _files(tmp_path: Path) -> tuple[Generated, Generated, Generated]:
    current, edited, missing = (tmp_path / n for n in ("current.txt", "edited.txt", "missing.txt"))
    current.write_text("current\n")
    edited.write_text("edited by hand\n")
    return (
        Generated(current, lambda: "current\n"),
        Generated(edited, lambda: "generated\n"),
        Generated(missing, lambda: "new\n"),
    )


def test_the_check_names_each_stale_file_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    current, edited, missing = _files(tmp_path)
    assert main(["--check"], (current, edited, missing)) == 1
    err = capsys.readouterr().err
    assert f"{edited.path} is stale: run `{REGENERATE}`" in err
    assert f"{missing.path} is stale" in err
    assert str(current.path) not in err
    assert edited.path.read_text() == "edited by hand\n"
    assert not missing.path.exists()


def test_the_command_writes_only_the_stale_files(tmp_path: Path) -> None:
    current, edited, missing = _files(tmp_path)
    before = current.path.stat().st_mtime_ns
    assert main([], (current, edited, missing)) == 0
    assert edited.path.read_text() == "generated\n"
    assert missing.path.read_text() == "new\n"
    assert current.path.stat().st_mtime_ns == before
    assert write((current, edited, missing)) == []
