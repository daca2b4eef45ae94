"""E2B's ``GET /v2/sandboxes`` and a sandbox's metrics, from fleetd's records.

The list holds the sandboxes whose instance the caller may read (``machines:read``), filtered
by metadata (every pair given), state (running, paused) and start; newest first unless
``order=asc``; a page of ``limit`` (default 100) and ``X-Next-Token`` for the next, an opaque
offset into the same order.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime
from urllib.parse import parse_qsl

from contracts.e2b import control as api
from contracts.errors import InvalidParams, NotFound
from contracts.gateway.metrics import MACHINES_METRICS, MachineMetricsParams
from contracts.people import MACHINES_READ
from controlplane.store import E2bSandbox, Store
from services.gateway.auth import Caller
from services.gateway.e2b.calls import Calls
from services.gateway.e2b.sandboxes import Sandboxes


class Query:
    """A list's filters, read from its query string; InvalidParams naming a bad one."""

    def __init__(self, query: Mapping[str, str]) -> None:
        self.metadata = dict(parse_qsl(query.get("metadata", ""), keep_blank_values=True))
        states = [s for s in query.get("state", "").split(",") if s]
        if any(s not in ("running", "paused") for s in states):
            raise InvalidParams(f"state {query['state']!r}: running, paused", field="state")
        self.states = set(states) or {"running", "paused"}
        self.descending = query.get("order", "desc") != "asc"
        self.started_after = _time(query.get("startedAfter"))
        self.template = query.get("template")
        self.limit = _int(query.get("limit"), "limit", 100, api.MAX_LIST)
        self.offset = _offset(query.get("nextToken"))


async def listed(sandboxes: Sandboxes, store: Store, query: Query,
                 caller: Caller) -> tuple[list[api.SandboxDetail], str | None]:  # fmt: skip
    """One page of the sandboxes ``caller`` may read, and the next page's token."""
    records = [r for r in await store.e2b.many(await store.e2b.ids())
               if caller.may(r.instance_id, MACHINES_READ) and matches(r, query)]  # fmt: skip
    records.sort(key=lambda r: r.started_at, reverse=query.descending)
    out: list[api.SandboxDetail] = []
    at = query.offset
    while at < len(records) and len(out) < query.limit:
        record, at = records[at], at + 1
        try:
            detail = await sandboxes.detail(record.id, caller)
        except NotFound:  # killed meanwhile, or its machine gone
            continue
        if detail.state in query.states:
            out.append(detail)
    more = at < len(records)
    return out, base64.urlsafe_b64encode(str(at).encode()).decode() if more else None


def matches(record: E2bSandbox, query: Query) -> bool:
    """Whether a sandbox is one the list's filters ask for (its state aside: its machine's)."""
    if query.template and query.template not in (record.template_id, record.alias):
        return False
    # At a microsecond's precision, as a start time is shown: a sandbox started at the very
    # time asked for is one started after it (E2B's own list test asks with one's start time).
    if query.started_after and _micros(record.started_at) < _micros(
        query.started_after.timestamp()
    ):
        return False
    return all(record.metadata.get(k) == v for k, v in query.metadata.items())


def _micros(at: float) -> int:
    return round(at * 1_000_000)


async def metrics(calls: Calls, sandbox_id: str, cores: int, start: str | None,
                  end: str | None, caller: Caller) -> list[api.SandboxMetric]:  # fmt: skip
    """``machines.metrics``'s samples between ``start`` and ``end`` (epoch seconds), its CPU
    as a share of its ``cores``."""
    since = _int(start, "start", 0, 2**40)
    until = _int(end, "end", 2**40, 2**40)
    got = await calls(MACHINES_METRICS, MachineMetricsParams(
        machine_id=sandbox_id, since=float(since) if since else None), caller)  # fmt: skip
    out = []
    for s in got.samples:
        if s.at > until:
            continue
        out.append(api.SandboxMetric(
            timestamp=datetime.fromtimestamp(s.at).astimezone(), timestamp_unix=int(s.at),
            cpu_count=cores, cpu_used_pct=round(100 * (s.cpu_cores or 0.0) / cores, 2),
            mem_used=s.memory_bytes or 0, mem_total=s.memory_limit_bytes or 0, mem_cache=0,
            disk_used=s.disk_bytes or 0, disk_total=s.disk_limit_bytes or 0,
        ))  # fmt: skip
    return out


def _int(raw: str | None, field: str, default: int, most: int) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 0 <= int(raw) <= most:
        raise InvalidParams(f"{field} {raw!r} is not a whole number 0 to {most}", field=field)
    return int(raw)


def _offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(base64.urlsafe_b64decode(token.encode()).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidParams(f"nextToken {token!r} is not one a list answered",
                            field="nextToken") from None  # fmt: skip


def _time(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParams(f"startedAfter {raw!r} is not an RFC 3339 time",
                            field="startedAfter") from None  # fmt: skip
