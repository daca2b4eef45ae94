"""``python -m codegen``: write every stale generated file; ``--check``: name them, exit 1."""

from __future__ import annotations

from codegen.files import GENERATED
from codegen.generated import main

if __name__ == "__main__":
    raise SystemExit(main(None, GENERATED))
