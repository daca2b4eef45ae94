"""``wokenBy`` of a machine's record (``machines.get``, the console): what asked for its last
resume or start, kept through its next pause or stop, so that a paused machine says what woke it
last. In memory; in a real browser: tests/e2e/test_console_pause.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fast.conftest import World
from tests.fast.test_wake import EXEC, paused, settled, stopped

method = pytest.mark.gateway_method


async def woken_by(world: World, machine_id: str) -> tuple[str, str | None]:
    got = await world.rpc("machines.get", {"machineId": machine_id})
    return got["status"], got["wokenBy"]


@method("machines.get", "machines.resume")
async def test_a_paused_machine_says_what_woke_it_last(world: World, tmp_path: Path) -> None:
    m = await paused(world, tmp_path)
    assert await woken_by(world, m.id) == ("paused", None)  # never woken since its creation
    name, params = EXEC
    await settled(world, world.rpc(name, {"machineId": m.id, **params}))  # wakes it
    assert await woken_by(world, m.id) == ("ready", "exec")
    await world.rpc("machines.pause", {"machineId": m.id})
    await world.bus.settle()
    assert await woken_by(world, m.id) == ("paused", "exec")  # kept through the pause
    await world.rpc("machines.resume", {"machineId": m.id})
    await world.bus.settle()
    assert await woken_by(world, m.id) == ("ready", "request")


@method("machines.get", "machines.start")
async def test_a_started_machine_says_what_started_it(world: World) -> None:
    m = await stopped(world)
    assert await woken_by(world, m.id) == ("stopped", None)
    name, params = EXEC
    await settled(world, world.rpc(name, {"machineId": m.id, **params}))  # starts it
    assert await woken_by(world, m.id) == ("ready", "exec")
    await world.rpc("machines.stop", {"machineId": m.id})
    await world.bus.settle()
    await world.rpc("machines.start", {"machineId": m.id})
    await world.bus.settle()
    assert await woken_by(world, m.id) == ("ready", "request")
