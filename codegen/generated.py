"""The committed files generated from contracts/: write the stale ones, or name them.

One command for all of them, ``python -m codegen`` (``--check``: change nothing, exit 1 naming
each stale file); ``./run lint`` runs the check, and ``tests/unit/test_codegen.py`` too.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

#: The repository's root: every generated file is committed under it.
REPO = Path(__file__).resolve().parent.parent
REGENERATE = ".venv/bin/python -m codegen"


@dataclass(frozen=True)
class Generated:
    """A committed file and the function that makes its text."""

    path: Path
    render: Callable[[], str]

    def is_current(self) -> bool:
        return self.path.exists() and self.path.read_text() == self.render()

    def shown(self) -> str:
        """Its path relative to the repository (absolute when outside it: a test's copy)."""
        return (
            str(self.path.relative_to(REPO)) if self.path.is_relative_to(REPO) else str(self.path)
        )


def stale(files: Sequence[Generated]) -> list[Generated]:
    return [f for f in files if not f.is_current()]


def write(files: Sequence[Generated]) -> list[Generated]:
    """Write the stale files (an unchanged one keeps its mtime); return them."""
    changed: list[Generated] = []
    for f in files:
        text = f.render()
        if f.path.exists() and f.path.read_text() == text:
            continue
        f.path.parent.mkdir(parents=True, exist_ok=True)
        f.path.write_text(text)
        changed.append(f)
    return changed


def main(argv: Sequence[str] | None, files: Sequence[Generated]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m codegen",
        description="Write every file generated from contracts/ that is stale.",
    )
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 naming each stale file"
    )
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale(files)
        for f in out_of_date:
            print(f"{f.shown()} is stale: run `{REGENERATE}`", file=sys.stderr)
        return 1 if out_of_date else 0
    for f in write(files):
        print(f"wrote {f.shown()}", file=sys.stderr)
    return 0
