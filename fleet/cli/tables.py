"""Tables as the CLI prints them, the machines' one included, from nothing heavier than ``re``
and ``datetime``: `fleet machines list` draws its table on the blocking path (oneshot.py), which
imports neither the models nor msgspec, from the same functions the full path uses.

A machine is read through ``MachineView``: the ``Machine`` model, or oneshot's view of the
answer's JSON by the same names.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

TYPE_CHECKING = False  # typing's, without importing typing (the blocking path's start)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Protocol

    class MachineView(Protocol):
        """What a machine's row reads (the ``Machine`` model's names)."""

        @property
        def id(self) -> str: ...
        @property
        def instance_id(self) -> str: ...
        @property
        def provider(self) -> str: ...
        @property
        def runtime(self) -> str: ...
        @property
        def runtime_platform(self) -> str | None: ...
        @property
        def host_id(self) -> str | None: ...
        @property
        def status(self) -> str: ...
        @property
        def status_reason(self) -> str: ...
        @property
        def setup_warning(self) -> str | None: ...
        @property
        def daemon_version(self) -> str | None: ...
        @property
        def daemon_git_sha(self) -> str | None: ...
        @property
        def code_status(self) -> str: ...
        @property
        def update_available(self) -> bool: ...
        @property
        def created_at(self) -> datetime: ...


UPDATE_MARK = "*"
#: The mark after a daemon's version in tables, and what it means, by ``codeStatus``
#: (``current`` and ``unknown`` are not marked).
CODE_MARKS = {
    "behind": (UPDATE_MARK, "newer code available: fleet machines refresh-code MACHINE_ID"),
    "ahead": ("+", "runs code newer than the platform's"),
    "diverged": ("~", "runs code from another branch than the platform's"),
}
#: The most characters a table's cell shows; the rest is one "…" (`--json` has the whole).
CELL_WIDTH = 80
_NEWLINES = re.compile(r"\s*(?:\r\n|\r|\n)\s*")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f]")
MACHINE_HEADS = ["ID", "INSTANCE", "PROVIDER", "RUNTIME", "HOST", "STATUS", "DAEMON", "AGE",
                 "REASON"]  # fmt: skip


def cell(text: str, width: int = CELL_WIDTH) -> str:
    """Text on one line of a table: each line break a ⏎, other control characters a space, and
    at most ``width`` characters, the last one … when it was longer."""
    one = _CONTROLS.sub(" ", _NEWLINES.sub(" ⏎ ", text.strip()))
    return one if len(one) <= width else one[: width - 1] + "…"


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """Columns padded to their widest cell, two spaces apart; no trailing blanks. One line per
    row, whatever the text (see ``cell``)."""
    cells = [[cell(c) for c in r] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def age(when: datetime, now: datetime | None = None) -> str:
    """How long ago, in the largest whole unit: 42s, 5m, 3h, 2d."""
    secs = max(0, int(((now or datetime.now(UTC)) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def daemon_text(m: MachineView) -> str:
    """The daemon's version, its commit's short sha and its code mark; ``-`` before one ran."""
    if m.daemon_version is None:
        return "-"
    sha = (m.daemon_git_sha or "")[:7]
    text = f"{m.daemon_version}@{sha}" if sha else m.daemon_version
    return text + code_mark(m)


def code_mark(m: MachineView) -> str:
    if m.code_status == "behind" and not m.update_available:
        return ""  # a failed or archived machine gets no update
    return CODE_MARKS[m.code_status][0] if m.code_status in CODE_MARKS else ""


def runtime_text(m: MachineView) -> str:
    """``namespaces``, or ``gvisor (ptrace)`` with its platform."""
    return f"{m.runtime} ({m.runtime_platform})" if m.runtime_platform else m.runtime


def machines_table(machines: Sequence[MachineView]) -> str:
    rows = [
        [
            m.id,
            m.instance_id,
            m.provider,
            runtime_text(m),
            m.host_id or "-",
            str(m.status),
            daemon_text(m),
            age(m.created_at),
            f"{m.status_reason} (warning: {m.setup_warning})"
            if m.setup_warning
            else m.status_reason,
        ]
        for m in machines
    ]
    text = table(rows, MACHINE_HEADS)
    for mark, meaning in CODE_MARKS.values():
        if any(code_mark(m) == mark for m in machines):
            text += f"\n{mark} {meaning}"
    return text
