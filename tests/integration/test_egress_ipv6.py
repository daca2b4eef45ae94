"""IPv6 egress on machines of both providers, against the outside host's IPv6 address and
AAAA records of the test's DNS server.

``local``: pasta gives the machine's namespace the host's IPv6 address and default route, so
a machine reaches IPv6 destinations, and its policy holds there as for IPv4: an allowed
address and port connects, another port is refused with an event, a deny entry refuses the
address, an allowed name's AAAA answer opens its address, an AAAA answer rebinding to ``::1``
is refused.

``docker``: the machines' network (fleet-machines) has no IPv6 and the engine turns IPv6 off
in each container, so a docker machine has no IPv6 path at all: whatever its policy, an IPv6
connection fails before it leaves. Its resolver answers AAAA queries by the same rules
(allowed, denied, rebinding), which is what is tested there."""

from __future__ import annotations

import json

import pytest

from bench.outside import PORT, Outside
from contracts.status import MachineStatus
from fleet.client import FleetClient
from tests.docker_env import docker_gateway, docker_image, nats_server, remove_containers
from tests.integration.egress_outside import (
    AAAA,
    REFUSED,
    Zone,
    outside,
    over_tcp,
    refusals,
    stack_settings,
    zone,
)
from tests.integration.test_network_isolation import connect_from

__all__ = ["docker_gateway", "docker_image", "nats_server", "outside", "remove_containers",
           "stack_settings", "zone"]  # fmt: skip
pytestmark = pytest.mark.usefixtures("remove_containers")
OTHER_PORT = PORT + 1
#: Each name in argv[1] (JSON) resolved to its IPv6 addresses by the machine's resolver.
RESOLVE6 = """
import json, socket, sys
out = {}
for name in json.loads(sys.argv[1]):
    try:
        infos = socket.getaddrinfo(name, 80, socket.AF_INET6, socket.SOCK_STREAM)
        out[name] = infos[0][4][0]
    except socket.gaierror:
        out[name] = "gaierror"
print(json.dumps(out))
"""


async def ready_machine(stack: FleetClient, provider: str, **policy: object) -> tuple[str, str]:
    """A ready machine of a new instance whose policy is ``policy``: the instance, the machine."""
    inst = await stack.create_instance("egress-v6")
    await stack.set_network_policy(inst.id, **policy)  # type: ignore[arg-type]
    machine = await stack.create_machine(inst.id, provider)  # type: ignore[arg-type]
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=90)
    assert done.status is MachineStatus.READY, done.status_reason
    return inst.id, machine.id


async def test_ipv6_addresses_and_names_on_a_local_machine(
    stack: FleetClient, outside: Outside, zone: tuple[Zone, int]
) -> None:
    six, four = outside.address6, outside.address
    allow = [f"[{six}]:{PORT}", f"*.example.test:{PORT}", f"{four}:{PORT}"]
    inst, mid = await ready_machine(stack, "local", default="deny", allow=allow)
    seen = await connect_from(stack, mid, [(six, PORT), (six, OTHER_PORT), (four, PORT)])
    assert list(seen.values()) == ["connected", REFUSED, "connected"], seen
    denied = await refusals(stack, mid, {f"{six}:{OTHER_PORT}"})  # refused by its rules
    assert denied[f"{six}:{OTHER_PORT}"].reason == "denied"

    # Names: an allowed name's AAAA answer; one rebinding to ::1 refused.
    names = ["six.example.test", "rebind6.example.test"]
    result = await stack.exec(mid, ["python3", "-c", RESOLVE6, json.dumps(names)], timeout_s=60)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"six.example.test": six,
                                         "rebind6.example.test": "gaierror"}  # fmt: skip
    seen6 = await refusals(stack, mid, {"rebind6.example.test"})
    rebound = seen6["rebind6.example.test"]
    assert (rebound.reason, rebound.destination) == ("rebinding", "::1")
    # Allowed by name only: the AAAA answer opened the address, on the name's port.
    await stack.set_network_policy(inst, default="deny", allow=[f"*.example.test:{PORT}"])
    again = await stack.exec(mid, ["python3", "-c", RESOLVE6, json.dumps(names[:1])])
    assert json.loads(again.stdout) == {"six.example.test": six}, again.stderr
    seen = await connect_from(stack, mid, [("six.example.test", PORT), (four, PORT)])
    assert list(seen.values()) == ["connected", REFUSED], seen

    # A deny entry refuses the IPv6 address under default allow (the outside server listens
    # on it: only the machine's rules refuse); IPv4 stays open. Its event may be past the
    # machine's burst of events by now: the two above are the events checked.
    await stack.set_network_policy(inst, default="allow", deny=[six])
    seen = await connect_from(stack, mid, [(six, PORT), (four, PORT)])
    assert list(seen.values()) == [REFUSED, "connected"], seen


async def test_a_docker_machine_has_no_ipv6_path_and_its_resolver_keeps_the_rules(
    stack: FleetClient, outside: Outside, zone: tuple[Zone, int]
) -> None:
    six = outside.address6
    # Even allowed, and under the default policy: no IPv6 leaves a docker machine.
    inst, mid = await ready_machine(stack, "docker")
    assert list((await connect_from(stack, mid, [(six, PORT)])).values()) == ["OSError"]
    allow = [f"[{six}]:{PORT}", f"*.example.test:{PORT}"]
    await stack.set_network_policy(inst, default="deny", allow=allow, deny=["denied.example.test"])
    assert list((await connect_from(stack, mid, [(six, PORT)])).values()) == ["OSError"]
    assert await over_tcp(stack, mid, "six.example.test", AAAA) == [0, 1, six]
    assert (await over_tcp(stack, mid, "denied.example.test", AAAA))[:2] == [3, 0]  # NXDOMAIN
    assert (await over_tcp(stack, mid, "rebind6.example.test", AAAA))[:2] == [5, 0]  # REFUSED
    seen = await refusals(stack, mid, {"denied.example.test", "rebind6.example.test"})
    assert seen["rebind6.example.test"].destination == "::1"
