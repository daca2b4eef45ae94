"""Per-token rate limits on the methods that cost the platform most (create, rebuild, exec)."""

from __future__ import annotations

import msgspec
import pytest

from contracts.errors import FleetError, RateLimited
from services.gateway.auth import Caller
from services.gateway.auth.rate_limits import RateLimiter
from tests.fakes.clock import TICK, ManualClock
from tests.fast.conftest import World
from tests.fast.test_gateway import token_of

method = pytest.mark.gateway_method


@pytest.fixture
def settings(settings: msgspec.Struct) -> msgspec.Struct:
    return msgspec.structs.replace(settings, rate_create_per_min=2, rate_exec_per_min=3,
                                    rate_build_per_min=2)  # fmt: skip


@method("machines.create", "machines.rebuild")
async def test_a_token_past_its_create_budget_gets_rate_limited(world: World) -> None:
    inst = (await world.instance()).id
    mine = token_of(inst)
    await world.rpc("machines.create", {"instanceId": inst}, mine)
    await world.rpc("machines.rebuild", {"instanceId": inst}, mine)  # the same bucket
    with pytest.raises(RateLimited) as refused:
        await world.rpc("machines.rebuild", {"instanceId": inst}, mine)
    assert refused.value.data is not None
    assert refused.value.data["retryAfterS"] >= 1
    assert len(await world.store.list_machines(inst)) == 2  # the refused call did nothing
    # another token has its own budget; the operator's admin token is not limited
    other = (await world.instance("other")).id
    theirs = Caller(token_id="t-00000000000000bb", admin=False, instance_id=other)
    await world.rpc("machines.create", {"instanceId": other}, theirs)
    await world.rpc("machines.rebuild", {"instanceId": inst})


@method("machines.exec")
async def test_a_token_past_its_exec_budget_gets_rate_limited(world: World) -> None:
    machine = await world.ready_machine()
    mine = token_of(machine.instance_id)
    for _ in range(3):
        await world.rpc("machines.exec", {"machineId": machine.id, "command": ["true"]}, mine)
    with pytest.raises(RateLimited):
        await world.rpc("machines.exec", {"machineId": machine.id, "command": ["true"]}, mine)


@method("machines.exec")
async def test_a_spent_exec_budget_gives_one_more_call_per_its_share_of_a_minute(
    world: World,
) -> None:
    """3 a minute: once spent, the next call is allowed 20 s of the gateway's clock later."""
    clock = ManualClock()
    world.reconfigure(clock=clock)
    machine = await world.ready_machine()
    mine = token_of(machine.instance_id)
    run = {"machineId": machine.id, "command": ["true"]}
    for _ in range(3):
        await world.rpc("machines.exec", run, mine)
    await clock.advance(20.0 - TICK)
    with pytest.raises(RateLimited):
        await world.rpc("machines.exec", run, mine)
    await clock.advance(TICK)
    await world.rpc("machines.exec", run, mine)
    with pytest.raises(RateLimited):
        await world.rpc("machines.exec", run, mine)


@method("environments.build")
async def test_a_token_past_its_build_budget_gets_rate_limited(world: World) -> None:
    """Each call may build an image (or answer an image's ID): a flood is refused before it
    reaches a host."""
    inst = (await world.instance()).id
    mine = token_of(inst)
    for _ in range(2):
        with pytest.raises(FleetError) as answered:  # no environment set: refused, but counted
            await world.rpc("environments.build", {"instanceId": inst}, mine)
        assert not isinstance(answered.value, RateLimited)
    with pytest.raises(RateLimited) as refused:
        await world.rpc("environments.build", {"instanceId": inst}, mine)
    assert "environment builds" in refused.value.message
    with pytest.raises(FleetError) as admin:  # the operator's admin token is not limited
        await world.rpc("environments.build", {"instanceId": inst})
    assert not isinstance(admin.value, RateLimited)


def test_the_bucket_refills_over_a_minute() -> None:
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])
    assert all(limiter.take("t") == 0 for _ in range(60))
    assert limiter.take("t") == pytest.approx(1.0)
    assert limiter.wait_s("t") == pytest.approx(1.0)
    now[0] = 2.5
    assert limiter.take("t") == 0
    assert limiter.take("t") == 0
    assert limiter.take("t") > 0
    assert RateLimiter(0).take("t") == 0  # 0: no limit
