"""``instances.setLimits`` / ``instances.getLimits``: the rules (who may raise, the maxima, the
input), in memory. That the limits reach a container and a cgroup: tests/integration."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.errors import (
    EnvironmentInvalid,
    Forbidden,
    HostRequirementsExceeded,
    InvalidParams,
    NotFound,
)
from controlplane.policy import Limits
from environments import devcontainer as dc
from environments.lifecycle_commands import MachineLifecycle
from services.provisioner.builds.environment import machine_limits
from tests.fast.conftest import World
from tests.fast.test_gateway import MISSING_INSTANCE, token_of, two_instances

method = pytest.mark.gateway_method


@method("instances.getLimits", "instances.setLimits")
async def test_an_instance_starts_with_the_platform_defaults_and_sets_its_own(
    world: World,
) -> None:
    a, _ = await two_instances(world)
    s = world.settings
    got = await world.rpc("instances.getLimits", {"instanceId": a})
    assert got == {"instanceId": a, "memoryMb": s.machine_memory_mb, "cpus": s.machine_cpus,
                   "pids": s.machine_pids, "maxRunningMachines": None, "own": []}  # fmt: skip
    bigger = {"instanceId": a, "memoryMb": s.machine_memory_mb * 2, "pids": 100}
    got = await world.rpc("instances.setLimits", bigger)
    assert (got["memoryMb"], got["pids"], got["cpus"]) == (s.machine_memory_mb * 2, 100, 1.0)
    assert got["own"] == ["memoryMb", "pids"]
    assert await world.rpc("instances.getLimits", {"instanceId": a}) == got
    # Omitted: back to the default.
    reset = await world.rpc("instances.setLimits", {"instanceId": a})
    assert reset["own"] == []
    assert reset["memoryMb"] == s.machine_memory_mb


@method("instances.setLimits")
async def test_an_instance_token_may_lower_but_not_raise(world: World) -> None:
    a, b = await two_instances(world)
    s = world.settings
    lower = {"instanceId": a, "memoryMb": 256, "cpus": 0.5, "pids": 64}
    got = await world.rpc("instances.setLimits", lower, token_of(a))
    assert (got["memoryMb"], got["cpus"], got["pids"]) == (256, 0.5, 64)
    with pytest.raises(Forbidden) as raised:
        await world.rpc(
            "instances.setLimits", {"instanceId": a, "cpus": s.machine_cpus + 1}, token_of(a)
        )
    assert "admin" in str(raised.value)
    assert (await world.rpc("instances.getLimits", {"instanceId": a}))["cpus"] == 0.5  # kept
    with pytest.raises(Forbidden):  # another instance's
        await world.rpc("instances.setLimits", {"instanceId": b, "pids": 64}, token_of(a))
    with pytest.raises(Forbidden):
        await world.rpc("instances.getLimits", {"instanceId": b}, token_of(a))


@method("instances.setLimits", "instances.getLimits")
async def test_limits_are_validated_and_bounded(world: World) -> None:
    a, _ = await two_instances(world)
    s = world.settings
    cases: list[tuple[dict[str, Any], str]] = [
        ({"memoryMb": s.machine_max_memory_mb + 1}, "$.memoryMb"),  # past the maximum
        ({"pids": s.machine_max_pids + 1}, "$.pids"),
        ({"memoryMb": 16}, "$.memoryMb"),  # too small for the daemon itself
        ({"cpus": 0}, "$.cpus"),
        ({"cpus": "lots"}, "$.cpus"),
        ({"pids": 1.5}, "$.pids"),
        ({"disk": 5}, "$.disk"),
    ]
    for extra, field in cases:
        with pytest.raises(InvalidParams) as bad:
            await world.rpc("instances.setLimits", {"instanceId": a, **extra})
        assert bad.value.field == field, (extra, bad.value)
    with pytest.raises(NotFound):
        await world.rpc("instances.setLimits", {"instanceId": MISSING_INSTANCE, "pids": 64})
    with pytest.raises(NotFound):
        await world.rpc("instances.getLimits", {"instanceId": MISSING_INSTANCE})


async def test_a_devcontainers_host_requirements_are_its_machines_limits_within_the_instances(
    world: World,
) -> None:
    machine = await world.ready_machine()
    s = world.settings
    await world.rpc("instances.setLimits", {"instanceId": machine.instance_id, "cpus": 2.0,
                                            "memoryMb": 4096})  # fmt: skip

    async def asking(requirements: str) -> Limits:
        conf = dc.parse(f'{{"image": "x", "hostRequirements": {requirements}}}'.encode(),
                        ".devcontainer.json", workspace="/w")  # fmt: skip
        await world.store.lifecycles.save(machine.id, MachineLifecycle(devcontainer=conf))
        return await machine_limits(world.store, s, machine)

    assert await asking('{"cpus": 2, "memory": "2gb"}') == Limits(2048, 2.0, s.machine_pids)
    assert await asking('{"memory": "1.5gb"}') == Limits(1536, 2.0, s.machine_pids)
    with pytest.raises(HostRequirementsExceeded) as over:
        await asking('{"cpus": 4, "memory": "8gb"}')
    assert over.value.data == {"asked": {"cpus": 4, "memoryMb": 8192},
                               "allowed": {"cpus": 2.0, "memoryMb": 4096}}  # fmt: skip
    assert "instances.setLimits" in over.value.message


@pytest.mark.parametrize(("cpus", "memory_bytes"), [(0, None), (None, 0), (0, 0), (-1, None)])
async def test_host_requirements_of_nothing_never_lift_a_machines_limits(
    world: World, cpus: int | None, memory_bytes: int | None
) -> None:
    """A machine's record that asks for 0 CPUs or 0 bytes (the engine's "no limit"; a record
    kept from before its file was refused for it): the machine gets no limits of nothing,
    it fails by name."""
    machine = await world.ready_machine()
    asked = dc.HostRequirements(cpus=cpus, memory_bytes=memory_bytes)
    conf = dc.Devcontainer(path=".devcontainer.json", image="x", host_requirements=asked)
    await world.store.lifecycles.save(machine.id, MachineLifecycle(devcontainer=conf))
    with pytest.raises(EnvironmentInvalid, match="at least 1"):
        await machine_limits(world.store, world.settings, machine)
