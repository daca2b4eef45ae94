"""A host with no Docker engine (no DOCKER_HOST, no socket: a fresh Debian): a machine of the
default environment starts all the same, and a machine whose instance names an image fails at
its environment stage saying so, instead of the provisioner's handler failing on the engine's
client."""

from __future__ import annotations

from contracts.errors import ProviderError
from controlplane.settings import Settings
from controlplane.store import Store
from tests.fakes import FakeBus
from tests.fast.conftest import make_world


def no_engine_here(asked: list[str]) -> object:
    def engine() -> object:
        asked.append("engine")
        raise ProviderError("no Docker engine answers here")  # as DockerProvider.docker says

    return engine


async def test_a_default_machine_needs_no_engine(
    settings: Settings, store: Store, bus: FakeBus
) -> None:
    """Its repos' devcontainer.json is not looked for where there is no engine to build it."""
    world = make_world(settings, store, bus, engine=no_engine_here([]))
    iid = (await world.instance()).id
    await world.rpc("repos.add", {"instanceId": iid, "url": "https://git.example.com/a.git",
                                  "branch": "main", "path": "a"})  # fmt: skip
    machine = await world.ready_machine(iid)
    assert machine.status == "ready"


async def test_an_image_without_an_engine_fails_the_machine_naming_it(
    settings: Settings, store: Store, bus: FakeBus
) -> None:
    asked: list[str] = []
    world = make_world(settings, store, bus, engine=no_engine_here(asked))
    iid = (await world.instance()).id
    await world.rpc("instances.setEnvironment", {"instanceId": iid, "environment": {"image": "x"}})
    created = await world.rpc("machines.create", {"instanceId": iid})
    await world.bus.settle()
    machine = await world.machine(created["id"])
    assert machine.status == "failed"
    assert "no Docker engine answers here" in (machine.status_reason or "")
    assert asked == ["engine"]
