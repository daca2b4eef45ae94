"""`fleet audit`: who did what, from the audit log (docs/audit.md)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from fleet.cli.common import SubAction, UsageError, command, emit
from fleet.cli.render import table

if TYPE_CHECKING:
    from contracts.gateway.audit import AuditEntry
    from fleet.client import FleetClient

_AGO = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def register(sub: SubAction) -> None:
    p = command(sub, "audit", _audit, "audit log entries, newest first (admin)")
    p.add_argument("--actor", help="a token id (admin: the operator's token) or a user id")
    p.add_argument("--instance", help="an instance id")
    p.add_argument("--machine", help="a machine id")
    p.add_argument("--method", help="a method (machines.exec) or action (files.upload)")
    p.add_argument("--since", help="an ISO time, or an age: 30m, 12h, 7d")
    limit = p.add_argument("--limit", type=int, default=100)

    def limit_help() -> None:  # the contract loads every method spec: only for this help
        from contracts.gateway.audit import MAX_LIST

        limit.help = f"at most this many (<= {MAX_LIST})"

    p.on_help = limit_help


def parse_since(text: str | None, now: datetime | None = None) -> datetime | None:
    """``30m`` (that long ago) or an ISO 8601 time (UTC unless it says otherwise)."""
    if text is None:
        return None
    if m := _AGO.match(text.strip()):
        return (now or datetime.now(UTC)) - timedelta(seconds=int(m[1]) * _UNITS[m[2]])
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--since {text!r}: not an ISO time nor an age like 30m") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def audit_table(entries: Sequence[AuditEntry]) -> str:
    rows = [
        [
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            e.actor,
            e.method,
            e.machine_id or e.instance_id or "-",
            "ok" if e.ok else f"error {e.error_code}",
            e.client_address or "-",
        ]
        for e in entries
    ]
    return table(rows, ["TIME", "ACTOR", "METHOD", "TARGET", "OUTCOME", "FROM"])


async def _audit(c: FleetClient, a: argparse.Namespace) -> int:
    entries = await c.audit(actor=a.actor, instance_id=a.instance, machine_id=a.machine,
                            method=a.method, since=parse_since(a.since),
                            limit=a.limit)  # fmt: skip
    return emit(a, entries, lambda: audit_table(entries) if entries else "no entries")
