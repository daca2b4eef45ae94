"""A known caller flooding the audit log with large refused calls, against the real stack: every
stored entry stays within the size cap, the refusals past the caller's limit are summarised as
``audit.suppressed`` entries naming the caller and counting every one, and a real entry made
after the flood is there. (That refusals never push a real entry out of a full buffer:
tests/fast/test_audit.py.)"""

from __future__ import annotations

import asyncio

import msgspec
import nats
import pytest

from contracts.daemon.machine_files import CronJob
from contracts.errors import Forbidden
from contracts.gateway import audit as a
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.integration.test_audit import entry
from tests.integration.test_people import member_client
from tests.waiters import wait_until

#: Refused calls sent; each would record about 40 KB of params uncapped.
FLOOD = 100
#: What the docs promise an entry takes at most, encoded.
ENTRY_CAP = 8 * 1024


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, audit_suppressed_every_s=0.5)


def big_table(n: int) -> list[CronJob]:
    """A cron table whose recorded params, redacted as they are, weigh ~40 KB."""
    return [CronJob(name=f"j{n}-{i}", schedule="* * * * *", command=[f"{k}" * 300 for k in
                    range(32)]) for i in range(4)]  # fmt: skip


async def stored_sizes(settings: Settings) -> list[int]:
    """The size of every entry as the stream holds it."""
    nc = await nats.connect(settings.nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(a.AUDIT_STREAM)
        msgs = [await js.get_msg(a.AUDIT_STREAM, seq) for seq in
                range(info.state.first_seq, info.state.last_seq + 1)]  # fmt: skip
        return [len(m.data or b"") for m in msgs]
    finally:
        await nc.close()


async def test_a_flood_of_large_refusals_is_capped_summarised_and_pushes_nothing_out(
    stack: FleetClient, settings: Settings
) -> None:
    inst = await stack.create_instance("flooded")
    viewer = await member_client(stack, inst.id, "flood@example.com", "viewer")
    (user,) = [u.id for u in await stack.list_users() if u.email == "flood@example.com"]
    async with viewer:
        got = await asyncio.gather(*(viewer.set_cron(inst.id, big_table(n))
                                     for n in range(FLOOD)), return_exceptions=True)  # fmt: skip
    assert all(isinstance(e, Forbidden) for e in got), got
    await stack.set_env("AFTER_FLOOD", "1", inst.id)

    real = await entry(stack, "env.set", actor="admin")
    assert (real.instance_id, real.params["name"], real.ok) == (inst.id, "AFTER_FLOOD", True)
    counted: dict[str, int] = {}

    async def all_counted() -> bool:
        own = await stack.audit(actor=user, method="cron.set", limit=1000)
        summaries = await stack.audit(actor=user, method=a.Action.SUPPRESSED, limit=1000)
        counted["own"] = len(own)
        counted["summarised"] = sum(s.params["count"] for s in summaries)
        return counted["own"] + counted["summarised"] == FLOOD

    await wait_until(all_counted, timeout=20)
    assert counted["summarised"] > 0, counted
    (summary, *_) = await stack.audit(actor=user, method=a.Action.SUPPRESSED)
    assert summary.params["methods"] == {"cron.set": summary.params["count"]}
    assert summary.error_code == Forbidden.code
    sizes = await stored_sizes(settings)
    assert max(sizes) <= ENTRY_CAP, sorted(sizes)[-5:]
