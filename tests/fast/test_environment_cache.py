"""``environments.list|build|delete``, in memory: who may call them, the input rules (each
refusal names its field), and a host with no Docker engine answering NotSupported. The builds
on a real engine, through NATS: tests/integration/test_environment_cache.py."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.errors import Forbidden, InvalidParams, NotFound, NotSupported
from tests.fast.conftest import World
from tests.fast.test_gateway import MISSING_INSTANCE, token_of, two_instances

method = pytest.mark.gateway_method


@method("environments.list", "environments.delete")
async def test_the_cache_is_the_admins(world: World) -> None:
    a, _ = await two_instances(world)
    for name, params in (("environments.list", {}),
                         ("environments.delete", {"environmentId": "0" * 32})):  # fmt: skip
        with pytest.raises(Forbidden):
            await world.rpc(name, params, token_of(a))
        with pytest.raises(NotSupported, match="no Docker engine"):  # this host has none
            await world.rpc(name, params)


@method("environments.build")
async def test_a_build_is_the_instances(world: World) -> None:
    a, b = await two_instances(world)
    with pytest.raises(Forbidden):
        await world.rpc("environments.build", {"instanceId": b}, token_of(a))
    with pytest.raises(Forbidden):  # a host of its choosing: the admin's to name
        await world.rpc("environments.build", {"instanceId": a, "hostId": "h2"}, token_of(a))
    with pytest.raises(NotFound):
        await world.rpc("environments.build", {"instanceId": MISSING_INSTANCE})
    with pytest.raises(InvalidParams) as unset:
        await world.rpc("environments.build", {"instanceId": a}, token_of(a))
    assert unset.value.field == "$.instanceId"
    await world.rpc("instances.setEnvironment", {"instanceId": a, "environment": {"image": "x"}})
    with pytest.raises(NotSupported, match="no Docker engine"):
        await world.rpc("environments.build", {"instanceId": a}, token_of(a))


@method("environments.list", "environments.build", "environments.delete")
async def test_bad_params_name_their_field(world: World) -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("environments.delete", {}, "environmentId"),
        ("environments.delete", {"environmentId": "abc"}, "environmentId"),
        ("environments.delete", {"environmentId": "Z" * 32}, "environmentId"),
        ("environments.delete", {"environmentId": "0" * 32, "hostId": "a b"}, "hostId"),
        ("environments.list", {"hostId": ""}, "hostId"),
        ("environments.list", {"extra": 1}, "extra"),
        ("environments.build", {}, "instanceId"),
        ("environments.build", {"instanceId": "nope"}, "instanceId"),
    ]
    for name, params, field in cases:
        with pytest.raises(InvalidParams) as bad:
            await world.rpc(name, params)
        assert field in bad.value.message, (name, params, bad.value.message)
