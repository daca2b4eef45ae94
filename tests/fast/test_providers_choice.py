"""Which provider a machine gets: machines.create {provider}, else the platform's default
(fleet up --provider); swarm, a load-test provider that isolates nothing, is for admins only."""

from __future__ import annotations

import pytest

from contracts.bus.events import MachineCreated
from contracts.errors import Forbidden
from services.gateway.auth import Caller
from tests.fast.conftest import World

method = pytest.mark.gateway_method


def token_of(instance_id: str) -> Caller:
    return Caller(token_id="t-00000000000000aa", admin=False, instance_id=instance_id)


@method("machines.create")
async def test_an_instance_token_cannot_ask_for_swarm(world: World) -> None:
    a = (await world.rpc("instances.create", {"name": "a"}))["id"]
    with pytest.raises(Forbidden) as refused:
        await world.rpc("machines.create", {"instanceId": a, "provider": "swarm"}, token_of(a))
    assert "swarm" in str(refused.value)
    assert world.bus.of(MachineCreated) == []  # nothing was made


@method("machines.create", "machines.rebuild")
async def test_the_platform_default_applies_when_none_is_asked_for(world: World) -> None:
    world.reconfigure(default_provider="docker")
    a = (await world.rpc("instances.create", {"name": "a"}))["id"]
    m = await world.rpc("machines.create", {"instanceId": a}, token_of(a))
    assert m["provider"] == "docker"
    assert world.bus.one(MachineCreated, m["id"]).provider == "docker"
    b = (await world.rpc("instances.create", {"name": "b"}))["id"]
    asked = await world.rpc("machines.create", {"instanceId": b, "provider": "local"})
    assert asked["provider"] == "local"
    rebuilt = await world.rpc("machines.rebuild", {"instanceId": b})
    assert rebuilt["provider"] == "local"  # a rebuild keeps the machine's provider
