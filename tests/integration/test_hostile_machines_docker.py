"""The hostile-machine tenant test (test_hostile_machines.py) on ``docker``: a machine that
keeps a FIFO in place of its daemon's lock and asks for many restarts at once stalls no other
tenant, and its stop ends it; a machine cannot make a device node."""

from __future__ import annotations

import pytest

from fleet.client import FleetClient
from services.common.settings import Settings
from tests.docker_env import docker_gateway, docker_image, home_of, nats_server, remove_containers
from tests.integration.test_hostile_machines import (
    cannot_make_a_device_node,
    fifo_lock_and_restarts,
)

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")


async def test_a_fifo_lock_and_restarts_stall_no_other_tenant(
    stack: FleetClient, settings: Settings
) -> None:
    await fifo_lock_and_restarts(stack, settings, "docker", home_of)


async def test_a_machine_cannot_make_a_device_node_or_a_hard_link_out(stack: FleetClient) -> None:
    await cannot_make_a_device_node(stack, "docker")
