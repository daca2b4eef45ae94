"""The command line of a file generated from contracts/ and committed: write it, print it, or
check that the committed copy is current (a unit test runs the check)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


def main(
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
    path: Path,
    render: Callable[[], str],
    regenerate: str,
) -> int:
    """``--check``: exit 1 if ``path`` differs from ``render()``; ``--stdout``: print it;
    neither: write it (only when it changed)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    mode.add_argument("--stdout", action="store_true", help="print it instead of writing it")
    args = parser.parse_args(argv)
    text = render()
    if args.stdout:
        sys.stdout.write(text)
        return 0
    current = path.read_text() if path.exists() else None
    if args.check:
        if current != text:
            print(f"{path} is stale: run `{regenerate}`", file=sys.stderr)
            return 1
        return 0
    if current != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}", file=sys.stderr)
    return 0
