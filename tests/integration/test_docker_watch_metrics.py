"""``machines.watch`` and ``machines.metrics`` on docker machines (a real engine and the real
machine image): a watch sees an exec's changes in the container, and a watch of a machine that
is stopped ends, telling its client why; a machine's load shows in its samples (the engine's
stats of its container)."""

from __future__ import annotations

import pytest

from fleet.client import FleetClient
from tests.docker_env import docker_gateway, docker_image, nats_server, remove_containers
from tests.integration.test_docker import ready_machine
from tests.metrics_checks import shows_its_load
from tests.watch_checks import sees_an_execs_changes, watching

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")


@pytest.mark.timeout(300)
async def test_a_watch_on_a_docker_machine_sees_changes_and_ends_with_its_stop(
    stack: FleetClient,
) -> None:
    mid = await ready_machine(stack, "docker-watch")
    await sees_an_execs_changes(stack, mid)
    async with watching(stack, mid, "w", marker="again") as w:
        await stack.stop_machine(mid)
        end = await w.ended(timeout_s=120)
    assert end.reason == "stopped", end


@pytest.mark.timeout(300)
async def test_a_docker_machine_under_load_shows_it(stack: FleetClient) -> None:
    mid = await ready_machine(stack, "docker-metrics")
    took = await shows_its_load(stack, mid)
    print(f"docker: load seen in machines.metrics {took:.1f} s after it started")
