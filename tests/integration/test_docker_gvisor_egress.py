"""An instance's egress policy on a docker gvisor machine (providers/docker/gvisor.py), with
the real engine's runsc: the machine's stack is the host kernel's in the container's own
namespace (``--network=host``), so the namespaces machine's rules (providers/egress/nftables.py) see
its every packet. Under ``default: deny`` with one address allowed, the machine reaches that
one and never the other, from its start and after a live change; the machine's processes,
trying a route change, ``nft flush ruleset`` as netlink and a raw socket, change nothing (root
inside is refused on this provider: tests/integration/test_docker_gvisor.py). The namespaces
path: tests/integration/test_egress.py."""

from __future__ import annotations

import json

import msgspec
import pytest

from bench.outside import PORT, Outside
from contracts.errors import NotSupported
from contracts.status import MachineStatus
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.docker_env import docker_gateway, docker_image, nats_server, remove_containers
from tests.integration.egress_outside import REFUSED, Zone, outside, zone
from tests.integration.test_egress import names_go_through_the_platforms_dns
from tests.integration.test_network_isolation import CONNECT, connect_from

__all__ = ["docker_gateway", "docker_image", "nats_server", "outside", "remove_containers",
           "zone"]  # fmt: skip
pytestmark = pytest.mark.usefixtures("remove_containers")

#: As the machine's user: take the default route away, flush nftables through
#: nfnetlink, open a raw socket; each step's answer (a netlink errno, or the OSError's name).
ESCAPE = """
import json, socket, struct
out = {}
def message(kind, flags, seq, body):
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body
def tried(name, f):
    try:
        out[name] = f()
    except OSError as exc:
        out[name] = type(exc).__name__
def route():
    nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    nl.settimeout(5)
    rtm = struct.pack("BBBBBBBBI", socket.AF_INET, 0, 0, 0, 254, 0, 0, 0, 0)
    nl.send(message(25, 1 | 4, 1, rtm))
    return struct.unpack("=i", nl.recv(4096)[16:20])[0]
def nft():
    nf = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
    nf.settimeout(5)
    gen = lambda r: struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(r))
    nf.send(message(0x10, 1, 1, gen(10)) + message((10 << 8) | 2, 1 | 4, 2, gen(0))
            + message(0x11, 1, 3, gen(10)))
    return struct.unpack("=i", nf.recv(4096)[16:20])[0]
def raw():
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP).close()
    return "opened"
tried("route", route)
tried("nft", nft)
tried("raw", raw)
print(json.dumps(out))
"""


@pytest.fixture
def stack_settings(settings: Settings, zone: tuple[Zone, int]) -> Settings:
    """The platform's DNS proxy asks the test's DNS server. A daemon on ptrace traps every
    syscall: on a loaded host its answers take seconds."""
    return msgspec.structs.replace(settings, egress_dns_upstream=f"127.0.0.1:{zone[1]}",
                                   rpc_timeout_s=60.0)  # fmt: skip


@pytest.mark.timeout(600)
async def test_a_policy_holds_on_a_docker_gvisor_machine_against_its_processes(
    stack: FleetClient, outside: Outside
) -> None:
    a, b = (outside.address, PORT), (outside.address2, PORT)
    inst = await stack.create_instance("egress-gv")
    await stack.set_network_policy(inst.id, default="deny", allow=[f"{a[0]}:8000-8090"])
    machine = await stack.create_machine(inst.id, "docker", runtime="gvisor")
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=240)
    assert done.status is MachineStatus.READY, done.status_reason  # NATS is always open
    mid = machine.id
    assert "gVisor" in (await stack.exec(mid, ["dmesg"], timeout_s=60)).stdout

    seen = await connect_from(stack, mid, [a, b])
    assert list(seen.values()) == ["connected", REFUSED], seen
    tried = await stack.exec(mid, ["python3", "-c", ESCAPE], timeout_s=60)
    assert tried.exit_code == 0, tried
    escape = json.loads(tried.stdout)
    assert escape["route"] != 0, escape  # an errno, or no such socket: the route stays
    assert escape["nft"] != 0, escape
    assert escape["raw"] != "opened", escape
    with pytest.raises(NotSupported):  # root inside: never on this provider
        await stack.exec(mid, ["python3", "-c", CONNECT, json.dumps([a, b])], user="root")

    got = await stack.set_network_policy(inst.id, default="deny", allow=[b[0]])
    assert (got.machines, got.failed) == (1, [])
    seen = await connect_from(stack, mid, [a, b])
    assert list(seen.values()) == [REFUSED, "connected"], seen


@pytest.mark.timeout(600)
async def test_names_go_through_the_platforms_dns_on_a_docker_gvisor_machine(
    stack: FleetClient, outside: Outside, zone: tuple[Zone, int]
) -> None:
    """A name policy holds as on a namespaces docker machine: its resolver is the platform's
    DNS proxy, through the container's namespace, which gVisor's sockets are in."""
    await names_go_through_the_platforms_dns(stack, outside, zone, "docker", "gvisor")
