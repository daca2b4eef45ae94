"""An instance's egress policy on machines of both providers, against an outside host the test
makes (bench/outside.py: one server on two IPv4 addresses): a new machine starts with its
instance's policy; an address not allowed is refused at once; a port range; the machine's own
attempts (a route change through netlink, `nft flush ruleset` where it has nft, a raw socket)
change nothing; `git clone` from an allowed server works; a new policy reaches the running
machine before setNetworkPolicy answers (under a second); the default opens everything again.
Deny-wins, IPv6 and a 1,000-entry table in the kernel: tests/integration/test_egress_rules.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.outside import PORT, Outside, outside_host
from contracts.status import MachineStatus
from fleet.client import FleetClient
from tests.docker_env import docker_gateway, docker_image, nats_server, remove_containers
from tests.integration.test_network_isolation import connect_from

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")
REFUSED = "ConnectionRefusedError"

#: What a machine tries against its own network's rules; each must fail.
HOSTILE = """
import json, shutil, socket, struct, subprocess
out = {}
# RTM_DELROUTE of the main table's default route, as `ip route del default` sends it.
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
rtm = struct.pack("BBBBBBBBI", socket.AF_INET, 0, 0, 0, 254, 0, 0, 0, 0)
nl.send(struct.pack("=IHHII", 16 + len(rtm), 25, 1 | 4, 1, 0) + rtm)
out["route"] = struct.unpack("=i", nl.recv(4096)[16:20])[0]
if shutil.which("nft"):
    out["nft"] = subprocess.run(["nft", "flush", "ruleset"], capture_output=True).returncode
try:
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    out["raw"] = "opened"
except PermissionError:
    out["raw"] = "EPERM"
print(json.dumps(out))
"""


@pytest.fixture
def outside(tmp_path: Path, bare_repo: Path) -> Iterator[Outside]:
    with outside_host(tmp_path / "outside", repo=bare_repo) as host:
        yield host


@pytest.mark.parametrize("provider", ["local", "docker"])
async def test_a_policy_holds_from_the_start_and_changes_live(
    stack: FleetClient, outside: Outside, provider: str
) -> None:
    a, b = (outside.address, PORT), (outside.address2, PORT)
    inst = await stack.create_instance("egress")
    await stack.set_network_policy(inst.id, default="deny", allow=[f"{a[0]}:8000-8090"])
    machine = await stack.create_machine(inst.id, provider)  # type: ignore[arg-type]
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=90)
    assert done.status is MachineStatus.READY, done.status_reason  # NATS is always open
    mid = machine.id

    seen = await connect_from(stack, mid, [a, b])
    assert list(seen.values()) == ["connected", REFUSED], seen
    result = await stack.exec(mid, ["python3", "-c", HOSTILE])
    assert result.exit_code == 0, result.stderr
    hostile = json.loads(result.stdout)
    assert hostile["route"] == -1, hostile  # -EPERM: no CAP_NET_ADMIN in its namespace
    assert hostile.get("nft", 1) != 0, hostile
    assert hostile["raw"] == "EPERM", hostile
    assert list((await connect_from(stack, mid, [b])).values()) == [REFUSED]
    clone = await stack.exec(
        mid, ["git", "clone", "-q", outside.url("repo.git"), "/tmp/egress-clone"], timeout_s=60
    )
    assert clone.exit_code == 0, clone.stderr

    began = time.monotonic()
    got = await stack.set_network_policy(inst.id, default="deny",
                                         allow=[b[0], f"{a[0]}:9000-9100"])  # fmt: skip
    took = time.monotonic() - began
    assert (got.machines, got.failed) == (1, [])
    assert took < 1.0, f"setNetworkPolicy took {took:.2f}s"
    seen = await connect_from(stack, mid, [a, b])
    assert list(seen.values()) == [REFUSED, "connected"], seen  # 8080 is outside 9000-9100

    await stack.set_network_policy(inst.id)
    seen = await connect_from(stack, mid, [a, b])
    assert list(seen.values()) == ["connected", "connected"], seen
