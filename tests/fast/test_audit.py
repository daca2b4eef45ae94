"""The audit log's recording of gateway calls (``audited``) and ``audit.list``'s checks, on the
fast world; storing and reading entries on the real stream: tests/integration/test_audit.py."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
import redis.exceptions
from structlog.testing import capture_logs

from contracts.errors import Forbidden, InvalidParams, NotFound, Unavailable
from contracts.gateway.audit import Action, encode_entry
from controlplane.settings import Settings
from services.gateway.auth import Caller
from services.gateway.auth.audit_log import _DROP_LOG_S, AuditLog
from tests.fakes.clock import TICK, ManualClock
from tests.fast.conftest import World

#: What docs/audit.md promises an entry takes at most, encoded.
ENTRY_CAP = 8 * 1024


def recording(world: World, settings: Settings) -> tuple[World, AuditLog]:
    """The world's dispatcher with every call recorded into a log that stores nothing."""
    log = AuditLog(settings, world.store)
    world.reconfigure(audit=log)
    return world, log


async def test_state_changes_are_recorded_read_only_calls_not(
    world: World, settings: Settings
) -> None:
    world, log = recording(world, settings)
    inst = await world.rpc("instances.create", {"name": "a"})
    await world.rpc("env.set", {"instanceId": inst["id"], "name": "K", "value": "s3cret"})
    await world.rpc("instances.get", {"instanceId": inst["id"]})
    with pytest.raises(NotFound):
        await world.rpc("machines.archive", {"machineId": "m-00000000000000aa"})
    entries = log.buffered()
    assert [e.method for e in entries] == ["instances.create", "env.set", "machines.archive"]
    env = entries[1]
    assert (env.actor, env.instance_id, env.ok) == ("admin", inst["id"], True)
    assert env.params["value"] == "[redacted]"
    assert env.result == {"name": "K", "value": "[redacted]", "scope": "instance"}
    failed = entries[2]
    assert (failed.ok, failed.error_code, failed.machine_id) == (
        False, NotFound.code, "m-00000000000000aa")  # fmt: skip


@pytest.mark.gateway_method("audit.list")
async def test_only_admins_may_list_and_limits_are_checked(world: World) -> None:
    member = Caller(token_id="t-1", admin=False, instance_id="i-0000000000000001")
    with pytest.raises(Forbidden):
        await world.rpc("audit.list", {}, caller=member)
    with pytest.raises(InvalidParams, match="limit"):
        await world.rpc("audit.list", {"limit": 0})
    with pytest.raises(Unavailable):  # this world keeps no log
        await world.rpc("audit.list", {"limit": 5})


async def test_a_full_buffer_drops_counted_and_logged(
    world: World, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    log = AuditLog(msgspec.structs.replace(settings, audit_buffer=2), world.store)
    for i in range(5):
        log.record("env.set", actor="admin", params={"name": f"V{i}"})
    assert [e.params["name"] for e in log.buffered()] == ["V0", "V1"]
    assert log.dropped == 3
    assert "audit.dropped" in capsys.readouterr().out


async def stores_nothing() -> None:
    await asyncio.Event().wait()


async def test_drops_are_logged_at_most_once_a_period_of_the_clock_and_all_counted(
    world: World, settings: Settings
) -> None:
    """While the writer runs, a drop is logged, and the drops after it within ``_DROP_LOG_S``
    of the log's clock only counted; the first drop at the period's end is logged again."""
    clock = ManualClock()
    log = AuditLog(msgspec.structs.replace(settings, audit_buffer=1), world.store, clock=clock)
    log._task = asyncio.ensure_future(stores_nothing())  # the writer, running
    try:
        log.record("env.set", actor="admin", params={"name": "KEPT"})  # fills the buffer
        with capture_logs() as logs:
            log.record("env.set", actor="admin")
            await clock.advance(_DROP_LOG_S - TICK)
            log.record("env.set", actor="admin")  # within the period: counted only
            logged_within = len([e for e in logs if e["event"] == "audit.dropped"])
            await clock.advance(TICK)
            log.record("env.set", actor="admin")
        dropped = [e for e in logs if e["event"] == "audit.dropped"]
    finally:
        log._task.cancel()
    assert logged_within == 1
    assert [e["dropped_total"] for e in dropped] == [1, 3]
    assert log.dropped == 3


async def test_refusals_never_push_a_real_entry_out_of_a_full_buffer(
    world: World, settings: Settings
) -> None:
    """One caller's flood of refusals, and one refusal each of many callers, fill a buffer
    nothing drains: the real entry after them is kept, and every refusal is an entry or
    counted (none is lost)."""
    log = AuditLog(msgspec.structs.replace(settings, audit_buffer=10), world.store)
    flooder = Caller(token_id="t-f", admin=False, user_id="u-flood")
    for i in range(50):
        log.record("cron.set", caller=flooder, params={"n": i}, error=Forbidden("no"))
    for i in range(50):
        many = Caller(token_id=f"t-{i}", admin=False, user_id=f"u-{i}")
        log.record("env.set", caller=many, params={"name": "X"}, error=Forbidden("no"))
    log.record("env.set", actor="admin", params={"name": "REAL"})
    assert [e.params for e in log.buffered() if e.ok] == [{"name": "REAL"}]
    assert log.dropped == 0
    refused = len([e for e in log.buffered() if not e.ok])
    log.flush_suppressed()  # what the writer does each period
    summaries = [e for e in log.buffered() if e.method == Action.SUPPRESSED]
    assert refused + sum(e.params["count"] for e in summaries) == 100
    flooded = [e for e in summaries if e.actor == "u-flood"]
    assert flooded[0].params["methods"] == {"cron.set": flooded[0].params["count"]}
    assert log.dropped == 0


async def test_an_entry_keeps_its_size_cap_whatever_the_call_carried(
    world: World, settings: Settings
) -> None:
    log = AuditLog(settings, world.store)
    deep: dict[str, object] = {"k": "x" * 300}
    for _ in range(2):  # 32 x 32 strings, each cut at 256 characters: ~270 KB
        deep = {f"k{i}": deep for i in range(32)}
    log.record("cron.set", actor="admin", params=deep, result=deep, error=Forbidden("no"))
    (got,) = log.buffered()
    assert len(encode_entry(got)) <= ENTRY_CAP
    assert "k0" in got.params["keys"]


async def test_nothing_is_recorded_when_auditing_is_off(world: World, settings: Settings) -> None:
    log = AuditLog(msgspec.structs.replace(settings, audit_enabled=False), world.store)
    log.record("env.set", actor="admin")
    assert (log.buffered(), log.dropped) == ([], 0)


async def test_a_store_failing_over_leaves_the_instance_unknown_not_cached(
    world: World, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = await world.ready_machine()
    log = AuditLog(settings, world.store)

    async def failing_over(machine_id: str) -> None:
        raise redis.exceptions.ConnectionError("primary gone")

    with monkeypatch.context() as m:
        m.setattr(world.store, "get_machine", failing_over)
        assert await log._instance_of(machine.id) is None
    assert await log._instance_of(machine.id) == machine.instance_id
