"""A docker machine lists only its programs' ports too: not its resolver (the DNS proxy's socket
in the container's namespace) nor its daemon's control server. Its SSH server (port 22 on its
loopback, started at setup for ``fleet machines tunnel M 22``) is one of its programs, and
listed."""

from __future__ import annotations

import pytest

from fleet.client import FleetClient
from tests.docker_env import docker_gateway, docker_image, nats_server, remove_containers
from tests.integration.test_docker import ready_machine
from tests.integration.test_ports import only_the_users_ports

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")


async def test_a_fresh_docker_machine_lists_none_of_the_platforms_ports(
    stack: FleetClient,
) -> None:
    await only_the_users_ports(stack, await ready_machine(stack, "fresh"), fresh=(22,))
