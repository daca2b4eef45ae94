"""The audit log's recording of gateway calls (``audited``) and ``audit.list``'s checks, on the
fast world; storing and reading entries on the real stream: tests/integration/test_audit.py."""

from __future__ import annotations

import msgspec
import pytest
import redis.exceptions

from contracts.errors import Forbidden, InvalidParams, NotFound, Unavailable
from contracts.gateway_rpc import GATEWAY_METHODS
from contracts.jsonrpc import Dispatcher
from services.common.settings import Settings
from services.gateway.access import Caller
from services.gateway.api import routes
from services.gateway.audit_log import AuditLog, audited
from tests.fast.conftest import World


def recording(world: World, settings: Settings) -> tuple[World, AuditLog]:
    """The world's dispatcher with every call recorded into a log that stores nothing."""
    log = AuditLog(settings, world.store)
    router = audited(routes(world.api, world.api.ops), log)
    world.dispatcher = Dispatcher(GATEWAY_METHODS, router)
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
