"""An instance's egress policy on machines of both providers, against an outside host the test
makes (bench/outside.py, tests/integration/egress_outside.py) and a DNS server it controls (the
upstream of the platform's DNS proxy): a new machine starts with its instance's policy; an
address not allowed is refused at once; a port range; the machine's own attempts (a route
change and `nft flush ruleset` as netlink messages, which need no nft in the machine; a raw
socket) are refused with EPERM and change nothing; `git clone` from an allowed server works, and
`pip download` from an allowed index (the test's own pip, uploaded as a zip: the docker machine
image has python3 and no pip); a new policy reaches the running machine before
setNetworkPolicy answers (under a second), and holds after a stop and start; the default opens
everything again; deny entries aimed at NATS (or at everything) never block it.
Names: an allowed one answers and its address opens for the machine, a denied one is NXDOMAIN,
`*.example.test` is not `example.test.evil`, a name rebinding to 127.0.0.1 or the platform's
address is refused, DNS to another server is blocked under default deny.
IPv6 on machines: tests/integration/test_egress_ipv6.py. Deny-wins, IPv6 and a 1,000-entry
table in the kernel: tests/integration/test_egress_rules.py."""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

import pytest

from bench.outside import PORT, Outside
from contracts.status import MachineStatus
from controlplane.host_addresses import nats_servers
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.docker_env import docker_gateway, docker_image, nats_server, remove_containers
from tests.integration.egress_outside import (
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

#: What a machine tries against its own network's rules; each must fail.
HOSTILE = """
import json, shutil, socket, struct, subprocess
out = {}
def message(kind, flags, seq, body):
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body
# RTM_DELROUTE of the main table's default route, as `ip route del default` sends it.
nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
nl.settimeout(5)
rtm = struct.pack("BBBBBBBBI", socket.AF_INET, 0, 0, 0, 254, 0, 0, 0, 0)
nl.send(message(25, 1 | 4, 1, rtm))
out["route"] = struct.unpack("=i", nl.recv(4096)[16:20])[0]
# `nft flush ruleset` as nft sends it, whether or not the machine has nft: one nfnetlink batch
# (begin, NFT_MSG_DELTABLE of every family, end) to the nftables subsystem (10).
nf = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
nf.settimeout(5)
def gen(res_id):
    return struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(res_id))
nf.send(message(0x10, 1, 1, gen(10)) + message((10 << 8) | 2, 1 | 4, 2, gen(0))
        + message(0x11, 1, 3, gen(10)))
out["nft"] = struct.unpack("=i", nf.recv(4096)[16:20])[0]
if shutil.which("nft"):
    out["nft_cli"] = subprocess.run(["nft", "flush", "ruleset"], capture_output=True).returncode
try:
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    out["raw"] = "opened"
except PermissionError:
    out["raw"] = "EPERM"
print(json.dumps(out))
"""


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
    assert hostile["nft"] == -1, hostile  # -EPERM from nfnetlink, nft or not
    assert hostile.get("nft_cli", 1) != 0, hostile
    assert hostile["raw"] == "EPERM", hostile
    assert list((await connect_from(stack, mid, [b])).values()) == [REFUSED]
    clone = await stack.exec(
        mid, ["git", "clone", "-q", outside.url("repo.git"), "/tmp/egress-clone"], timeout_s=60
    )
    assert clone.exit_code == 0, clone.stderr

    # How long the change takes is bench/'s (benchmark 24), not a test's.
    got = await stack.set_network_policy(inst.id, default="deny",
                                         allow=[b[0], f"{a[0]}:9000-9100"])  # fmt: skip
    assert (got.machines, got.failed) == (1, [])
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
async def test_a_deny_entry_aimed_at_nats_cannot_block_it(
    stack: FleetClient, stack_settings: Settings, outside: Outside, provider: str
) -> None:
    """NATS is the platform's way in: entries naming its address and port, or everything,
    refuse the rest and never it, from the machine's start and after a change while its
    daemon's connection is open (a deny set refuses open connections too)."""
    [(host, port)] = nats_servers(stack_settings.nats_url)
    deny = [host, f"{host}:{port}", f"{host}/32", "0.0.0.0/0", "::/0"]
    inst = await stack.create_instance("egress-nats")
    await stack.set_network_policy(inst.id, default="deny", deny=deny)
    machine = await stack.create_machine(inst.id, provider)  # type: ignore[arg-type]
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=90)
    assert done.status is MachineStatus.READY, done.status_reason
    assert await out_of(stack, machine.id, ["echo", "reached"]) == "reached\n"
    seen = await connect_from(stack, machine.id, [(outside.address, PORT)])
    assert list(seen.values()) == [REFUSED], seen  # the policy is in force
    got = await stack.set_network_policy(inst.id, default="allow", deny=deny)
    assert (got.machines, got.failed) == (1, [])
    assert await out_of(stack, machine.id, ["echo", "still"]) == "still\n"
    assert (await stack.get_machine(machine.id)).status is MachineStatus.READY


@pytest.mark.parametrize("provider", ["local", "docker"])
async def test_names_go_through_the_platforms_dns(
    stack: FleetClient, outside: Outside, zone: tuple[Zone, int], provider: str
) -> None:
    await names_go_through_the_platforms_dns(stack, outside, zone, provider)


async def names_go_through_the_platforms_dns(
    stack: FleetClient, outside: Outside, zone: tuple[Zone, int], provider: str,
    runtime: str = "namespaces",
) -> None:  # fmt: skip
    """The names test on a machine of ``provider`` and ``runtime`` (test_docker_gvisor_egress.py
    runs it on a docker gvisor machine)."""
    inst = await stack.create_instance("egress-dns")
    allow = ["*.example.test:8000-8090", outside.address2]
    await stack.set_network_policy(inst.id, default="deny", allow=allow)
    machine = await stack.create_machine(inst.id, provider, runtime=runtime)  # type: ignore[arg-type]
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=240)
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


def pip_zip(path: Path) -> Path:
    """The test's own pip as a zip archive, which a machine's python3 runs as ``python3
    pip.zip/pip`` (pip needs only the standard library): the docker machine image has python3
    and no pip, and a machine's tools are the user's to bring, not the image's to change."""
    root = Path(str(importlib.util.find_spec("pip").origin)).parent  # type: ignore[union-attr]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(root.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                z.write(f, f.relative_to(root.parent))
    return path


@pytest.mark.parametrize("provider", ["local", "docker"])
async def test_pip_downloads_from_an_allowed_index_and_not_from_another(
    stack: FleetClient, outside: Outside, tmp_path: Path, provider: str
) -> None:
    simple_index(outside.root, "fleettiny", "1.0")
    inst = await stack.create_instance("egress-pip")
    await stack.set_network_policy(inst.id, default="deny", allow=[f"{outside.address}:{PORT}"])
    machine = await stack.create_machine(inst.id, provider)  # type: ignore[arg-type]
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=90)
    assert done.status is MachineStatus.READY, done.status_reason
    await stack.upload(machine.id, pip_zip(tmp_path / "pip.zip"), "pip.zip")

    async def pip_download(address: str) -> tuple[int, str]:
        argv = ["python3", "pip.zip/pip", "download", "--no-deps", "--no-cache-dir",
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
