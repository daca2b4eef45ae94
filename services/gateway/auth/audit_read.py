"""Reading the audit stream newest first, without a consumer: batched direct gets
(``$JS.API.DIRECT.GET``) over windows of sequence numbers, from the stream's end backwards,
each window twice as wide as the one before, until ``limit`` entries matched or the stream (or
``since``) is reached. The instance and machine filters are the stream's subject filter; actor
and method are matched here."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from contracts.errors import Unavailable
from contracts.gateway import audit as a

_API = f"$JS.API.DIRECT.GET.{a.AUDIT_STREAM}"
#: Messages asked for per direct get.
_BATCH = 256
_TIMEOUT_S = 5.0


async def read_entries(nc: NATS, p: a.AuditListParams) -> list[a.AuditEntry]:
    """The entries that match ``p``, newest first, at most ``p.limit``."""
    subject = a.audit_filter(p.instance_id, p.machine_id)
    try:
        info = await nc.jetstream().stream_info(a.AUDIT_STREAM)
    except (nats.errors.Error, nats.js.errors.Error) as exc:
        raise Unavailable(f"the audit stream does not answer: {exc}") from None
    first, hi = info.state.first_seq, info.state.last_seq
    sub = await nc.subscribe(nc.new_inbox())
    try:
        if p.since is not None:
            first = max(first, await _first_since(nc, sub, p, subject))
        found: list[a.AuditEntry] = []
        width = max(2 * p.limit, _BATCH)
        while hi >= first and hi > 0 and len(found) < p.limit:
            lo = max(first, hi - width + 1)
            window = await _forward(nc, sub, subject, lo, hi)
            found.extend(e for e in reversed(window) if _matches(e, p))
            hi, width = lo - 1, width * 2
        return found[: p.limit]
    finally:
        await sub.unsubscribe()


def _matches(e: a.AuditEntry, p: a.AuditListParams) -> bool:
    return (
        (p.actor is None or e.actor == p.actor)
        and (p.method is None or e.method == p.method)
        and (p.instance_id is None or e.instance_id == p.instance_id)
        and (p.machine_id is None or e.machine_id == p.machine_id)
        and (p.since is None or e.at >= p.since)
    )


async def _first_since(nc: NATS, sub: Subscription, p: a.AuditListParams, subject: str) -> int:
    """The sequence of the first entry stored at or after ``p.since`` (past the end: none)."""
    assert p.since is not None
    request = {"start_time": p.since.isoformat(), "next_by_subj": subject}
    replies = await _ask(nc, sub, request)
    seqs = [int(m.headers["Nats-Sequence"]) for m in replies if m.headers and m.data]
    return seqs[0] if seqs else 2**63


async def _forward(
    nc: NATS, sub: Subscription, subject: str, lo: int, hi: int
) -> list[a.AuditEntry]:
    """The entries on ``subject`` with sequences lo..hi, oldest first."""
    out: list[a.AuditEntry] = []
    seq = lo
    while seq <= hi:
        request = {"seq": seq, "batch": min(_BATCH, hi - seq + 1), "next_by_subj": subject}
        last, pending = seq - 1, 0
        for msg in await _ask(nc, sub, request):
            if not msg.data or not msg.headers:
                continue
            last = int(msg.headers["Nats-Sequence"])
            pending = int(msg.headers.get("Nats-Num-Pending", "0"))
            if last <= hi:
                out.append(a.decode_entry(msg.data))
        if last < seq or pending == 0:  # nothing more on this subject
            break
        seq = last + 1
    return out


async def _ask(nc: NATS, sub: Subscription, request: Mapping[str, object]) -> list[Msg]:
    """The replies to one (batched) direct get, up to its end of batch or its "not found"."""
    await nc.publish(_API, msgspec.json.encode(request), reply=sub.subject)
    replies: list[Msg] = []
    try:
        while True:
            msg = await sub.next_msg(timeout=_TIMEOUT_S)
            status = (msg.headers or {}).get("Status")
            if status is not None:
                if status not in ("204", "404"):
                    raise Unavailable(f"the audit stream answered {status}")
                return replies
            replies.append(msg)
            if request.get("batch") is None:  # a single message asked for
                return replies
    except nats.errors.TimeoutError:
        raise Unavailable("the audit stream did not answer in time") from None
