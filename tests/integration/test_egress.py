"""An instance's egress policy on machines of both providers, against an outside host the test
makes (bench/outside.py: one server on two IPv4 addresses) and a DNS server it controls (the
upstream of the platform's DNS proxy): a new machine starts with its
instance's policy; an address not allowed is refused at once; a port range; the machine's own
attempts (a route change through netlink, `nft flush ruleset` where it has nft, a raw socket)
change nothing; `git clone` from an allowed server works; a new policy reaches the running
machine before setNetworkPolicy answers (under a second), and holds after a stop and start;
the default opens everything again.
Names: an allowed one answers and its address opens for the machine, a denied one is NXDOMAIN,
`*.example.test` is not `example.test.evil`, a name rebinding to 127.0.0.1 or the platform's
address is refused, DNS to another server is blocked under default deny.
Deny-wins, IPv6 and a 1,000-entry table in the kernel: tests/integration/test_egress_rules.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from dnslib import QTYPE, RR
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from bench.outside import PORT, Outside, outside_host
from contracts.events import MachineEgressDenied
from contracts.status import MachineStatus
from contracts.subjects import EventKind
from fleet.client import FleetClient
from fleet.embedded import free_port
from providers.netns import RESOLVER
from services.common.settings import Settings
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


class Zone(BaseResolver):  # type: ignore[misc]
    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.asked: list[str] = []

    def resolve(self, request: object, handler: object) -> object:
        name = str(request.q.qname).rstrip(".")  # type: ignore[attr-defined]
        self.asked.append(name)
        reply = request.reply()  # type: ignore[attr-defined]
        if name in self.names and request.q.qtype == QTYPE.A:  # type: ignore[attr-defined]
            reply.add_answer(*RR.fromZone(f"{name}. 30 A {self.names[name]}"))
        return reply


@pytest.fixture
def zone(outside: Outside, docker_gateway: str) -> Iterator[tuple[Zone, int]]:
    """The upstream DNS server: names of the outside host, and rebinding ones."""
    names = {"a.example.test": outside.address, "example.test.evil": outside.address2,
             "other.test": outside.address2, "rebind.example.test": "127.0.0.1",
             "platform.example.test": docker_gateway}  # fmt: skip
    resolver = Zone(names)
    port = free_port()
    quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    server = DNSServer(resolver, port=port, address="127.0.0.1", logger=quiet)
    server.start_thread()
    yield resolver, port
    server.stop()
    server.server.server_close()


@pytest.fixture
def stack_settings(settings: Settings, zone: tuple[Zone, int]) -> Settings:
    return msgspec.structs.replace(settings, egress_dns_upstream=f"127.0.0.1:{zone[1]}")


#: Resolves each name in argv[1] (JSON), then connects to the first one's port PORT.
RESOLVE = f"""
import errno, json, socket, sys
out = {{}}
for name in json.loads(sys.argv[1]):
    try:
        out[name] = socket.gethostbyname(name)
    except socket.gaierror as exc:
        out[name] = "gaierror"
try:
    socket.create_connection((json.loads(sys.argv[1])[0], {PORT}), timeout=3).close()
    out["connect"] = "connected"
except OSError as exc:
    out["connect"] = type(exc).__name__
# A DNS query straight to another server (the outside host's address).
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.connect((sys.argv[2], 53))
try:
    s.send(bytes(12))
    s.recv(512)
    out["direct"] = "answered"
except OSError as exc:
    out["direct"] = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
print(json.dumps(out))
"""


#: One query over TCP to the machine's resolver (argv[1]: the name): rcode, answers, last 4 bytes.
TCP_QUERY = f"""
import json, socket, struct, sys
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in sys.argv[1].split(".")) + b"\\0"
q += struct.pack(">HH", 1, 1)
with socket.create_connection({RESOLVER!r}, timeout=5) as s:
    s.sendall(struct.pack(">H", len(q)) + q)
    size = struct.unpack(">H", s.recv(2))[0]
    reply = b""
    while len(reply) < size:
        reply += s.recv(size - len(reply))
answers = struct.unpack(">H", reply[6:8])[0]
print(json.dumps([reply[3] & 15, answers, ".".join(str(b) for b in reply[-4:])]))
"""


async def over_tcp(stack: FleetClient, machine_id: str, name: str) -> list[object]:
    result = await stack.exec(machine_id, ["python3", "-c", TCP_QUERY, name], timeout_s=30)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


async def refusals(
    stack: FleetClient, machine_id: str, wanted: set[str]
) -> dict[str, MachineEgressDenied]:
    """The machine's egress-denied events, by name (or ``destination:port``), until every one
    of ``wanted`` came."""
    seen: dict[str, MachineEgressDenied] = {}
    stream = stack.events(machine_id, None, [EventKind.EGRESS_DENIED.value])
    async with asyncio.timeout(30), contextlib.aclosing(stream):
        async for _, event in stream:
            assert isinstance(event, MachineEgressDenied)
            seen[event.name or f"{event.destination}:{event.port}"] = event
            if wanted <= seen.keys():
                return seen
    raise AssertionError(f"no events for {wanted - seen.keys()}")


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
    denied = await refusals(stack, mid, {f"{b[0]}:{b[1]}"})  # an event says so
    assert denied[f"{b[0]}:{b[1]}"].reason == "denied"
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

    # Stopped and started again (a new namespace): the policy is there from its start.
    await stack.stop_machine(mid)
    await stack.wait_for(mid, ("stopped",), timeout_s=60)
    await stack.start_machine(mid)
    assert (await stack.wait_for(mid, ("ready",), timeout_s=90)).status is MachineStatus.READY
    seen = await connect_from(stack, mid, [a, b])
    assert list(seen.values()) == [REFUSED, "connected"], seen

    await stack.set_network_policy(inst.id)
    seen = await connect_from(stack, mid, [a, b])
    assert list(seen.values()) == ["connected", "connected"], seen


@pytest.mark.parametrize("provider", ["local", "docker"])
async def test_names_go_through_the_platforms_dns(
    stack: FleetClient, outside: Outside, zone: tuple[Zone, int], provider: str
) -> None:
    inst = await stack.create_instance("egress-dns")
    allow = ["*.example.test:8000-8090", outside.address2]
    await stack.set_network_policy(inst.id, default="deny", allow=allow)
    machine = await stack.create_machine(inst.id, provider)  # type: ignore[arg-type]
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=90)
    assert done.status is MachineStatus.READY, done.status_reason
    # The first two refusals fit in one machine's burst of events (retries included).
    names = ["a.example.test", "example.test.evil", "rebind.example.test", "other.test",
             "platform.example.test"]  # fmt: skip
    result = await stack.exec(machine.id, ["python3", "-c", RESOLVE, json.dumps(names),
                                           outside.address2], timeout_s=60)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    got = json.loads(result.stdout)
    assert got["a.example.test"] == outside.address  # allowed: its address opened, 8080 too
    assert got["connect"] == "connected", got
    # Not allowed by name (even though other.test's address is): NXDOMAIN, upstream not asked.
    assert got["example.test.evil"] == got["other.test"] == "gaierror", got
    assert "example.test.evil" not in zone[0].asked
    # Allowed names rebinding to loopback or the platform: refused.
    assert got["rebind.example.test"] == got["platform.example.test"] == "gaierror", got
    # DNS to another server is blocked under default deny, though the address is allowed:
    # the send is refused by the machine's own rules (EPERM), not by the outside host.
    assert got["direct"] == "EPERM", got
    # The refusals are events of the machine (its timeline; `fleet machines egress`).
    seen = await refusals(stack, machine.id, {"example.test.evil", "rebind.example.test"})
    assert seen["example.test.evil"].reason == "denied"
    assert seen["rebind.example.test"].reason == "rebinding"
    assert seen["rebind.example.test"].destination == "127.0.0.1"
    # The resolver answers over TCP too, with the same rules.
    assert await over_tcp(stack, machine.id, "a.example.test") == [0, 1, outside.address]
    assert (await over_tcp(stack, machine.id, "example.test.evil"))[:2] == [3, 0]  # NXDOMAIN
    # A changed policy keeps what the machine learned through a name it still allows.
    await stack.set_network_policy(inst.id, default="deny", allow=[*allow, "unrelated.test"])
    kept = await connect_from(stack, machine.id, [(outside.address, PORT)])
    assert list(kept.values()) == ["connected"], kept


def simple_index(root: Path, name: str, version: str) -> None:
    """A PEP 503 index of one pure wheel under ``root``: ``simple/NAME/`` and the wheel."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
    }  # fmt: skip
    record = "".join(f"{path},,\n" for path in files) + f"{dist}/RECORD,,\n"
    wheel = f"{name}-{version}-py3-none-any.whl"
    (root / "simple" / name).mkdir(parents=True)
    with zipfile.ZipFile(root / "simple" / name / wheel, "w") as z:
        for path, text in {**files, f"{dist}/RECORD": record}.items():
            z.writestr(path, text)
    (root / "simple" / name / "index.html").write_text(f'<a href="{wheel}">{wheel}</a>\n')


async def test_pip_downloads_from_an_allowed_index_and_not_from_another(
    stack: FleetClient, outside: Outside
) -> None:
    """``local`` only: the machine runs the host's python3, which has pip (the docker
    machine's image has none)."""
    simple_index(outside.root, "fleettiny", "1.0")
    inst = await stack.create_instance("egress-pip")
    await stack.set_network_policy(inst.id, default="deny", allow=[f"{outside.address}:{PORT}"])
    machine = await stack.create_machine(inst.id, "local")
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=90)
    assert done.status is MachineStatus.READY, done.status_reason

    async def pip_download(address: str) -> tuple[int, str]:
        argv = ["python3", "-m", "pip", "download", "--no-deps", "--no-cache-dir",
                "--disable-pip-version-check", "--retries", "0", "--timeout", "3",
                "--index-url", outside.url("simple/", address), "--trusted-host", address,
                "-d", "dl", "fleettiny"]  # fmt: skip
        got = await stack.exec(machine.id, argv, timeout_s=60)
        return got.exit_code, got.stdout + got.stderr

    code, said = await pip_download(outside.address)
    assert code == 0, said
    assert "fleettiny-1.0-py3-none-any.whl" in await out_of(stack, machine.id, ["ls", "dl"])
    code, said = await pip_download(outside.address2)  # the same server, not allowed there
    assert code != 0, said
    await refusals(stack, machine.id, {f"{outside.address2}:{PORT}"})  # refused by its rules


async def out_of(stack: FleetClient, machine_id: str, argv: list[str]) -> str:
    got = await stack.exec(machine_id, argv)
    assert got.exit_code == 0, got.stderr
    return got.stdout
