"""A machine's runtime (``machines.create {runtime}``, ``instances.setRuntime``,
``FLEET_RUNTIME``) and root inside (``machines.exec {user: root}``): the rules, in memory. Real
runsc sandboxes with real daemons: tests/integration/test_gvisor.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contracts.bus.events import MachineCreated
from contracts.errors import Forbidden, InvalidParams, NotSupported
from tests.fast.conftest import World
from tests.fast.test_gateway import token_of, two_instances

method = pytest.mark.gateway_method


def with_runsc(world: World, runsc: str, **more: Any) -> None:
    """The gateway's settings with ``runsc`` as the host's runsc (a path that may not exist)."""
    world.reconfigure(runsc=runsc, **more)


def fake_runsc(tmp_path: Path) -> str:
    """An executable named runsc: what the gateway looks for (it never runs it)."""
    path = tmp_path / "bin" / "runsc"
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!/bin/sh\nexit 1\n")
    path.chmod(0o755)
    return str(path)


@method("instances.setRuntime", "instances.getRuntime")
async def test_runtime_settings_are_validated_and_scoped(world: World, tmp_path: Path) -> None:
    with_runsc(world, fake_runsc(tmp_path))
    a, b = await two_instances(world)
    got = await world.rpc("instances.getRuntime", {"instanceId": a})
    assert got == {"instanceId": a, "runtime": None, "effective": "namespaces"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"instanceId": a, "runtime": "kvm"}, "$.runtime"),
        ({"instanceId": a, "runtime": "GVISOR"}, "$.runtime"),
        ({"instanceId": a, "runtime": 1}, "$.runtime"),
        ({"instanceId": a}, "$.runtime"),
        ({"instanceId": "x", "runtime": "gvisor"}, "$.instanceId"),
    ]
    for params, field in cases:
        with pytest.raises(InvalidParams) as bad:
            await world.rpc("instances.setRuntime", params)
        assert bad.value.field == field, params
    set_ = await world.rpc("instances.setRuntime", {"instanceId": a, "runtime": "gvisor"},
                           token_of(a))  # fmt: skip
    assert set_ == {"instanceId": a, "runtime": "gvisor", "effective": "gvisor"}
    assert await world.rpc("instances.getRuntime", {"instanceId": a}) == set_
    with pytest.raises(Forbidden):
        await world.rpc("instances.setRuntime", {"instanceId": b, "runtime": "gvisor"},
                        token_of(a))  # fmt: skip
    with pytest.raises(Forbidden):
        await world.rpc("instances.getRuntime", {"instanceId": b}, token_of(a))
    cleared = await world.rpc("instances.setRuntime", {"instanceId": a, "runtime": None})
    assert cleared == {"instanceId": a, "runtime": None, "effective": "namespaces"}


@method("machines.create", "machines.get")
async def test_a_machine_gets_the_asked_then_the_instances_then_the_platforms_runtime(
    world: World, tmp_path: Path
) -> None:
    with_runsc(world, fake_runsc(tmp_path))
    a, b = await two_instances(world)
    plain = await world.rpc("machines.create", {"instanceId": a})
    assert (plain["runtime"], plain.get("runtimePlatform")) == ("namespaces", None)
    await world.rpc("machines.archive", {"machineId": plain["id"]})
    asked = await world.rpc("machines.create", {"instanceId": a, "runtime": "gvisor"})
    assert (asked["runtime"], asked["runtimePlatform"]) == ("gvisor", "ptrace")
    got = await world.rpc("machines.get", {"machineId": asked["id"]})
    assert (got["runtime"], got["runtimePlatform"]) == ("gvisor", "ptrace")
    assert (await world.machine(asked["id"])).runtime == "gvisor"  # as stored
    await world.rpc("instances.setRuntime", {"instanceId": b, "runtime": "gvisor"})
    own = await world.rpc("machines.create", {"instanceId": b})
    assert own["runtime"] == "gvisor"
    rebuilt = await world.rpc("machines.rebuild", {"instanceId": b})
    assert rebuilt["runtime"] == "gvisor"
    with_runsc(world, fake_runsc(tmp_path), runtime="gvisor")
    c = (await world.instance("c")).id
    assert (await world.rpc("machines.create", {"instanceId": c}))["runtime"] == "gvisor"
    d = (await world.instance("d")).id
    pinned = await world.rpc("machines.create", {"instanceId": d, "runtime": "namespaces"})
    assert (pinned["runtime"], pinned.get("runtimePlatform")) == ("namespaces", None)
    with pytest.raises(InvalidParams) as bad:
        await world.rpc("machines.create", {"instanceId": d, "runtime": "firecracker"})
    assert bad.value.field == "$.runtime"


@method("machines.create", "instances.setRuntime")
async def test_a_runtime_the_provider_cannot_run_is_refused_by_name_never_downgraded(
    world: World, tmp_path: Path
) -> None:
    with_runsc(world, str(tmp_path / "no" / "runsc"))  # this host has no runsc
    a = (await world.instance()).id
    with pytest.raises(NotSupported) as refused:
        await world.rpc("machines.create", {"instanceId": a, "runtime": "gvisor"})
    assert refused.value.code == 1601
    assert "gvisor" in str(refused.value)
    assert "runsc" in str(refused.value)
    assert refused.value.data == {"runtime": "gvisor", "provider": "local"}
    with pytest.raises(NotSupported):
        await world.rpc("instances.setRuntime", {"instanceId": a, "runtime": "gvisor"})
    with_runsc(world, str(tmp_path / "no" / "runsc"), runtime="gvisor")  # FLEET_RUNTIME=gvisor
    with pytest.raises(NotSupported):
        await world.rpc("machines.create", {"instanceId": a})
    assert await world.store.list_machines(a) == []  # nothing made, nothing run as namespaces
    with_runsc(world, fake_runsc(tmp_path))
    with pytest.raises(NotSupported) as swarm:
        await world.rpc("machines.create",
                        {"instanceId": a, "runtime": "gvisor", "provider": "swarm"})  # fmt: skip
    assert "swarm" in str(swarm.value)
    assert "gvisor" in str(swarm.value)
    assert swarm.value.data == {"runtime": "gvisor", "provider": "swarm"}
    assert await world.store.list_machines(a) == []
    assert not [e for e in world.bus.events if isinstance(e, MachineCreated)]


@method("machines.exec")
async def test_root_is_refused_on_a_namespaces_machine_by_its_runtime(world: World) -> None:
    m = await world.ready_machine()
    calls = len(world.daemons.calls)
    with pytest.raises(NotSupported) as refused:
        await world.rpc("machines.exec",
                        {"machineId": m.id, "command": ["id", "-u"], "user": "root"})  # fmt: skip
    assert refused.value.code == 1601
    assert "namespaces" in str(refused.value)
    assert refused.value.data == {"runtime": "namespaces", "user": "root"}
    assert len(world.daemons.calls) == calls  # never reached its daemon
    with pytest.raises(InvalidParams) as bad:
        await world.rpc("machines.exec",
                        {"machineId": m.id, "command": ["id"], "user": "0"})  # fmt: skip
    assert bad.value.field == "$.user"


@method("machines.exec")
async def test_root_on_a_gvisor_machine_goes_to_its_hosts_provider(
    world: World, tmp_path: Path
) -> None:
    """The fake provider runs nothing as root: its host refuses by name (the real one:
    tests/integration/test_gvisor.py)."""
    with_runsc(world, fake_runsc(tmp_path))
    a = (await world.instance()).id
    created = await world.rpc("machines.create", {"instanceId": a, "runtime": "gvisor"})
    await world.bus.settle()
    params = {"machineId": created["id"], "command": ["id"], "user": "root"}
    with pytest.raises(NotSupported) as refused:
        await world.rpc("machines.exec", params)
    assert "local provider" in str(refused.value)


@method("machines.fork")
async def test_a_fork_runs_its_sources_runtime(world: World, tmp_path: Path) -> None:
    with_runsc(world, fake_runsc(tmp_path))
    a = (await world.instance()).id
    created = await world.rpc("machines.create", {"instanceId": a, "runtime": "gvisor"})
    await world.bus.settle()
    got = await world.rpc("machines.fork", {"machineId": created["id"], "count": 2})
    assert [(f["runtime"], f["runtimePlatform"]) for f in got["machines"]] == [
        ("gvisor", "ptrace")
    ] * 2


@method("machines.fork")
async def test_a_fork_with_memory_of_a_namespaces_machine_is_refused_by_its_runtime(
    world: World, tmp_path: Path
) -> None:
    m = await world.ready_machine()
    with pytest.raises(NotSupported) as refused:
        await world.rpc("machines.fork", {"machineId": m.id, "count": 2, "memory": True})
    assert refused.value.code == 1601
    assert "namespaces" in str(refused.value)
    assert refused.value.data == {"runtime": "namespaces", "provider": "local"}
    # A gvisor machine whose host's provider cannot take its image: refused by that host,
    # and no fork is made.
    with_runsc(world, fake_runsc(tmp_path))
    a = (await world.instance()).id
    created = await world.rpc("machines.create", {"instanceId": a, "runtime": "gvisor"})
    await world.bus.settle()
    with pytest.raises(NotSupported) as unable:
        await world.rpc("machines.fork", {"machineId": created["id"], "memory": True})
    assert "cannot fork with memory" in str(unable.value)
    assert not [e for e in world.bus.events if isinstance(e, MachineCreated) and e.fork_of]
    assert world.provider.clones == []


@method("machines.snapshot")
async def test_a_snapshot_with_memory_of_a_namespaces_machine_is_refused_by_its_runtime(
    world: World,
) -> None:
    m = await world.ready_machine()
    with pytest.raises(NotSupported) as refused:
        await world.rpc("machines.snapshot", {"machineId": m.id, "name": "warm", "memory": True})
    assert refused.value.code == 1601
    assert "namespaces" in str(refused.value)
    assert refused.value.data == {"runtime": "namespaces", "provider": "local"}
    assert (await world.rpc("snapshots.list", {"instanceId": m.instance_id}))["snapshots"] == []


@method("machines.pause")
async def test_a_docker_gvisor_machine_cannot_be_paused_refused_by_its_provider(
    world: World,
) -> None:
    """The docker provider runs gvisor machines (the engine's runsc) but keeps no memory of
    them: a pause is 1601 naming the provider, whatever the machine's state (a fork with
    memory of a ready one: integration/test_docker_gvisor.py)."""
    a = (await world.instance()).id
    params = {"instanceId": a, "runtime": "gvisor", "provider": "docker"}
    created = await world.rpc("machines.create", params)
    assert (created["runtime"], created["provider"]) == ("gvisor", "docker")
    with pytest.raises(NotSupported) as refused:
        await world.rpc("machines.pause", {"machineId": created["id"]})
    assert refused.value.code == 1601
    assert "docker" in str(refused.value)
    assert refused.value.data == {"runtime": "gvisor", "provider": "docker"}
