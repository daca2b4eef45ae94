"""The codemode methods' rules through the dispatcher, in memory: validation, scope, bridges.
(Running code needs the sandbox and the bus: tests/integration/test_codemode*.py.)"""

from __future__ import annotations

import pytest

from contracts.errors import Forbidden, InvalidParams, NotFound
from services.gateway.auth import Caller
from tests.fast.conftest import World

method = pytest.mark.gateway_method
MISSING_RUN = "run-0000000000000000"


def token_of(instance_id: str) -> Caller:
    return Caller(token_id="t-00000000000000aa", admin=False, instance_id=instance_id)


@method("codemode.run", "codemode.describe")
async def test_run_and_describe_validate_and_scope_before_anything_runs(world: World) -> None:
    a = (await world.instance("a")).id
    b = (await world.instance("b")).id
    machine = await world.ready_machine(b)
    with pytest.raises(InvalidParams) as bad:
        await world.rpc("codemode.run", {"code": "1", "timeoutS": 10_000})
    assert bad.value.field == "$.timeoutS"
    with pytest.raises(InvalidParams) as missing:
        await world.rpc("codemode.run", {})
    assert missing.value.field == "$.code"
    for method_name, extra in (("codemode.run", {"code": "1"}), ("codemode.describe", {})):
        with pytest.raises(Forbidden):
            await world.rpc(method_name, {**extra, "instanceId": b}, caller=token_of(a))
        with pytest.raises(Forbidden):
            await world.rpc(method_name, {**extra, "machineId": machine.id}, caller=token_of(a))
    with pytest.raises(InvalidParams) as mismatch:
        await world.rpc("codemode.run", {"code": "1", "machineId": machine.id, "instanceId": a})
    assert mismatch.value.field == "$.instanceId"


@method("codemode.list", "codemode.cancel")
async def test_list_and_cancel_see_only_the_callers_runs(world: World) -> None:
    a = (await world.instance("a")).id
    b = (await world.instance("b")).id
    assert await world.rpc("codemode.list", {}) == {"runs": []}
    with pytest.raises(Forbidden):
        await world.rpc("codemode.list", {"instanceId": b}, caller=token_of(a))
    with pytest.raises(NotFound):
        await world.rpc("codemode.cancel", {"runId": MISSING_RUN})
    with pytest.raises(InvalidParams):
        await world.rpc("codemode.cancel", {"runId": "run-1"})
    from contracts.gateway.codemode import RunRecord, now

    record = RunRecord(run_id=MISSING_RUN, status="ok", instance_id=b, token_id="t-other",
                       started_at=now())  # fmt: skip
    await world.store.codemode.save_run(record)
    assert [r["runId"] for r in (await world.rpc("codemode.list", {}))["runs"]] == [MISSING_RUN]
    assert (await world.rpc("codemode.list", {}, caller=token_of(a)))["runs"] == []
    with pytest.raises(Forbidden):
        await world.rpc("codemode.cancel", {"runId": MISSING_RUN}, caller=token_of(a))


@method("codemode.bridges.set", "codemode.bridges.list", "codemode.bridges.remove")
async def test_bridges_are_kept_per_instance_with_the_secret_sealed(world: World) -> None:
    a = (await world.instance("a")).id
    b = (await world.instance("b")).id
    bridge = {"name": "pets", "specUrl": "http://x/openapi.json", "baseUrl": "http://x",
              "authorization": "Bearer very-secret"}  # fmt: skip
    info = await world.rpc("codemode.bridges.set", {"instanceId": a, "openapi": bridge})
    assert info == {"name": "pets", "kind": "openapi", "url": "http://x/openapi.json",
                    "hasAuthorization": True}  # fmt: skip
    stored = (await world.store.codemode.bridges(a))[0]
    assert stored.authorization
    assert "very-secret" not in stored.authorization
    assert world.box.decrypt(stored.authorization) == "Bearer very-secret"
    listed = await world.rpc("codemode.bridges.list", {"instanceId": a}, caller=token_of(a))
    assert listed == {"bridges": [info]}
    with pytest.raises(Forbidden):
        await world.rpc("codemode.bridges.list", {"instanceId": a}, caller=token_of(b))
    for bad in ({"instanceId": a}, {"instanceId": a, "mcp": {"name": "fleet", "url": "http://x"}},
                {"instanceId": a, "mcp": {"name": "Bad-Name", "url": "http://x"}},
                {"instanceId": a, "mcp": {"name": "m", "url": "file:///etc/passwd"}}):  # fmt: skip
        with pytest.raises(InvalidParams):
            await world.rpc("codemode.bridges.set", bad)
    removed = await world.rpc("codemode.bridges.remove", {"instanceId": a, "name": "pets"})
    assert removed == {"removed": True}
    assert await world.rpc("codemode.bridges.list", {"instanceId": a}) == {"bridges": []}
