"""The README's error table lists every code of ``contracts.errors`` and says when it is
raised: no row may claim a code is never raised (1601 once did, while refreshCode on swarm
answered it)."""

from __future__ import annotations

import re
from pathlib import Path

from contracts.errors import ERRORS, NotSupported

README = Path(__file__).resolve().parents[2] / "README.md"


def _rows() -> dict[int, str]:
    table = README.read_text().split("### Error codes", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| (-?\d+) \| (\w+) \| (.+) \|$", table, flags=re.MULTILINE)
    return {int(code): f"{name}: {when}" for code, name, when in rows}


def test_every_error_code_has_a_row() -> None:
    rows = _rows()
    assert set(ERRORS) <= set(rows), sorted(set(ERRORS) - set(rows))
    for code, cls in ERRORS.items():
        assert rows[code].startswith(cls.__name__ + ":"), rows[code]


def test_no_row_says_a_code_is_never_raised() -> None:
    rows = _rows()
    assert [r for r in rows.values() if re.search(r"not raised|reserved", r)] == []
    assert "refreshCode" in rows[NotSupported.code]
