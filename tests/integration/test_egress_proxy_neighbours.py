"""A docker machine never reaches another through the egress proxy (providers/egress/proxy.py):
the proxy connects from the host's namespace, where another container's bridge address is
reached as the host reaches it, past the network's ``enable_icc=false``; so every docker
network's subnet is refused as the platform's own addresses are, unless a policy names it.
On real docker machines on the engine: machine B of another instance serves HTTP on its
bridge address, and machine A's request to it through the proxy gets 403; a network made on
the engine after the platform started is refused as soon as the engine announces it."""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import AsyncIterator

import aiodocker
import pytest

from contracts.gateway.secrets import MACHINE_PROXY_URL
from contracts.status import MachineStatus
from fleet.client import FleetClient
from tests.docker_env import docker_gateway, docker_image, inspect, nats_server, remove_containers
from tests.waiters import wait_until

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")

#: A plain-HTTP request through the proxy (argv: the proxy, the URL): the status line it got.
THROUGH = """
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": sys.argv[1]}))
try:
    print(opener.open(sys.argv[2], timeout=20).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
"""
#: Whether B's server answers inside B (argv: its URL).
ANSWERS = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).status)"


async def _ready(stack: FleetClient, name: str) -> str:
    inst = await stack.create_instance(name)
    machine = await stack.create_machine(inst.id, "docker")
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=120)
    assert done.status is MachineStatus.READY, done.status_reason
    return machine.id


def _bridge_address(info: dict[str, object]) -> str:
    networks = info["NetworkSettings"]["Networks"]  # type: ignore[index]
    return str(next(iter(networks.values()))["IPAddress"])


async def test_a_docker_machine_cannot_reach_another_through_the_proxy(
    stack: FleetClient,
) -> None:
    a = await _ready(stack, "neighbour-a")
    b = await _ready(stack, "neighbour-b")
    await stack.start_process(b, ["python3", "-m", "http.server", "3000"])
    url = f"http://{_bridge_address(await inspect(b))}:3000/"

    async def serving() -> bool:
        got = await stack.exec(b, ["python3", "-c", ANSWERS, "http://127.0.0.1:3000/"])
        return got.stdout.strip() == "200"

    await wait_until(serving, timeout=60)
    got = await stack.exec(a, ["python3", "-c", THROUGH, MACHINE_PROXY_URL, url], timeout_s=60)
    assert got.stdout.strip() == "403", got.stdout + got.stderr


@pytest.fixture
async def late_network() -> AsyncIterator[ipaddress.IPv4Network]:
    """A bridge network of the test's own, made on the engine now (a free /24 of 10.254/16)."""
    async with aiodocker.Docker() as docker:
        for third in secrets.SystemRandom().sample(range(256), 16):
            subnet = ipaddress.IPv4Network(f"10.254.{third}.0/24")
            try:
                net = await docker.networks.create({
                    "Name": f"fleet-test-late-{third}", "Driver": "bridge",
                    "IPAM": {"Config": [{"Subnet": str(subnet)}]},
                })  # fmt: skip
            except aiodocker.DockerError:  # that subnet is another network's
                continue
            try:
                yield subnet
            finally:
                await net.delete()
            return
    pytest.fail("no free /24 in 10.254.0.0/16 for a network of the test's own")


async def test_a_network_made_after_the_start_is_refused_as_it_is_announced(
    stack: FleetClient, late_network: ipaddress.IPv4Network
) -> None:
    a = await _ready(stack, "neighbour-late")
    url = f"http://{late_network[5]}:3000/"

    async def refused() -> bool:
        got = await stack.exec(a, ["python3", "-c", THROUGH, MACHINE_PROXY_URL, url], timeout_s=60)
        return got.stdout.strip() == "403"

    await wait_until(refused, timeout=60)
