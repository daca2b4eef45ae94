"""The egress ruleset (providers/egress/nftables.py) in a real kernel, without machines: a network
namespace like a machine's, linked to an "outside" namespace that listens on several ports of
two IPv4 addresses and an IPv6 one. From inside, as a process without capabilities (as a
machine's are): deny wins over allow, ports and port ranges, IPv4 and IPv6, NATS always open, a
new policy replaces the old at once, and neither `nft flush ruleset`, a route change nor a raw
socket gets past it. The same on machines of both providers: tests/integration/test_egress.py."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from contracts.gateway.network import EgressPolicy
from providers.egress import nftables as egress

PORTS = (22, 80, 443, 8080, 9000)
LISTEN = f"""
import socket, selectors
sel = selectors.DefaultSelector()
for port in {PORTS!r}:
    s = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
print("up", flush=True)
while True:
    for key, _ in sel.select():
        conn, _ = key.fileobj.accept()
        conn.close()
"""
PROBE = """
import json, socket, subprocess, sys
out = {}
for host, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection((host, port), timeout=3).close()
        out[f"{host} {port}"] = "ok"
    except OSError as exc:
        out[f"{host} {port}"] = type(exc).__name__
print(json.dumps(out))
"""
#: What a process without CAP_NET_ADMIN tries; each must fail.
HOSTILE = """
import json, socket, subprocess
out = {}
for argv in (["nft", "flush", "ruleset"], ["ip", "route", "replace", "default", "dev", "eg0"]):
    out[argv[0]] = subprocess.run(argv, capture_output=True).returncode
try:
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    out["raw"] = "opened"
except PermissionError:
    out["raw"] = "EPERM"
print(json.dumps(out))
"""
#: As a machine's processes run: nobody, no capabilities at all.
NO_CAPS = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
           "--inh-caps=-all", "--bounding-set=-all"]  # fmt: skip


@dataclass
class Pair:
    inside: str
    pid: int
    v4: str
    v4b: str
    v6: str

    def run(self, code: str, *args: str) -> dict[str, object]:
        argv = ["ip", "netns", "exec", self.inside, *NO_CAPS, sys.executable, "-c", code, *args]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
        return json.loads(out.stdout)  # type: ignore[no-any-return]

    def reach(self, *targets: tuple[str, int]) -> dict[str, object]:
        return self.run(PROBE, json.dumps(targets))


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def pair() -> Iterator[Pair]:
    tag = secrets.token_hex(3)
    inside, outside = f"fleeteg-{tag}i", f"fleeteg-{tag}o"
    n = secrets.randbelow(250)
    procs: list[subprocess.Popen[str]] = []
    _ip("netns", "add", inside)
    _ip("netns", "add", outside)
    try:
        _ip("-n", inside, "link", "add", "eg0", "type", "veth", "peer", "name", "eg1", "netns",
            outside)  # fmt: skip
        for ns, dev, v4, v6 in ((inside, "eg0", f"10.216.{n}.2/30", "fd23::2/64"),
                                (outside, "eg1", f"10.216.{n}.1/30", "fd23::1/64")):  # fmt: skip
            _ip("-n", ns, "addr", "add", v4, "dev", dev)
            _ip("-n", ns, "addr", "add", v6, "dev", dev, "nodad")
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", outside, "addr", "add", f"10.217.{n}.1/32", "dev", "lo")
        _ip("-n", inside, "route", "add", "default", "via", f"10.216.{n}.1")
        server = subprocess.Popen(["ip", "netns", "exec", outside, sys.executable, "-c", LISTEN],
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        procs.append(server)
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "up"
        # The pid is yielded once the holder says it runs inside: before that it is still ip,
        # in the host's namespace, and an nft run there would fail (or touch the host).
        hold = ["sh", "-c", "echo up; exec sleep 600"]
        holder = subprocess.Popen(["ip", "netns", "exec", inside, *hold], stdout=subprocess.PIPE,
                                  text=True)  # fmt: skip
        procs.append(holder)
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "up"
        yield Pair(inside, holder.pid, f"10.216.{n}.1", f"10.217.{n}.1", "fd23::1")
    finally:
        for p in procs:
            p.kill()
            p.wait()
            if p.stdout is not None:
                p.stdout.close()
        subprocess.run(["ip", "netns", "del", inside], check=False)
        subprocess.run(["ip", "netns", "del", outside], check=False)


async def _policy(pair: Pair, platform: list[egress.Endpoint] | None = None, **kw: object) -> None:
    # The holder's pid is in the namespace: ip netns exec enters it, then execs sleep.
    script = egress.ruleset(EgressPolicy(**kw), platform or [])  # type: ignore[arg-type]
    await egress.apply(pair.pid, script, "test")


async def test_deny_wins_ports_and_both_families(pair: Pair) -> None:
    a, b, six = pair.v4, pair.v4b, pair.v6
    every = [(h, p) for h in (a, b, six) for p in PORTS]
    assert set(pair.reach(*every).values()) == {"ok"}  # before: nothing is refused
    await _policy(pair, default="deny",
                  allow=[f"{a}:80-443", f"{b}/32", f"[{six}]:8080", "10.216.0.0/16:9000"],
                  deny=[f"{b}:443", f"{a}:100-200"], platform=[(a, 22)])  # fmt: skip
    got = pair.reach(*every)
    want = {
        # the /16 allows 9000; 80-443 allows 80 and 443 (its 100-200 denied); 22 is NATS's.
        (a, 22): "ok", (a, 80): "ok", (a, 443): "ok", (a, 8080): "ConnectionRefusedError",
        (a, 9000): "ok",
        # the address with every port, but 443, denied
        (b, 22): "ok", (b, 80): "ok", (b, 443): "ConnectionRefusedError", (b, 8080): "ok",
        (b, 9000): "ok",
        (six, 8080): "ok",
    }  # fmt: skip
    for (h, p), seen in want.items():
        assert got[f"{h} {p}"] == seen, (h, p, got)
    assert [got[f"{six} {p}"] for p in (22, 80, 443, 9000)] == ["ConnectionRefusedError"] * 4
    # A machine without CAP_NET_ADMIN can change none of it, and opens no raw socket.
    hostile = pair.run(HOSTILE)
    assert hostile["nft"] != 0
    assert hostile["ip"] != 0
    assert hostile["raw"] == "EPERM"
    assert pair.reach((a, 8080)) == {f"{a} 8080": "ConnectionRefusedError"}
    # A new policy replaces the old one at once; the default one opens everything again.
    await _policy(pair, default="deny", allow=[f"{a}:8080"])
    assert pair.reach((a, 8080), (a, 80)) == {
        f"{a} 8080": "ok",
        f"{a} 80": "ConnectionRefusedError",
    }
    await _policy(pair)
    assert set(pair.reach(*every).values()) == {"ok"}


async def test_a_thousand_entries_load_as_one_table(pair: Pair) -> None:
    allow = [f"10.{i // 250}.{i % 250}.0/24:{1000 + i}-{1100 + i}" for i in range(998)]
    allow += ["10.0.0.0/8:1-10", f"{pair.v4}:80"]  # overlapping: made disjoint
    await _policy(pair, default="deny", allow=allow, deny=[f"[{pair.v6}]:1-65535"] * 1000)
    got = pair.reach((pair.v4, 80), (pair.v4, 443), (pair.v6, 80))
    assert list(got.values()) == ["ok", "ConnectionRefusedError", "ConnectionRefusedError"]


async def test_a_change_of_a_few_entries_loads_only_those_and_needs_the_table_it_knew(
    pair: Pair,
) -> None:
    a = pair.v4
    filler = [f"10.{100 + i // 250}.{i % 250}.0/24:{1000 + i}" for i in range(300)]

    def compiled(**kw: object) -> egress.Ruleset:
        return egress.compile_ruleset(EgressPolicy(**kw), [])  # type: ignore[arg-type]

    first = compiled(default="deny", allow=[*filler, f"{a}:80", "10.216.0.0/16:9000"])
    await egress.apply(pair.pid, first.script, "test")
    assert list(pair.reach((a, 80), (a, 443), (a, 9000), (a, 22)).values()) == [
        "ok", "ConnectionRefusedError", "ok", "ConnectionRefusedError"]  # fmt: skip
    # One entry gone, two new ones that split the /16's element around `a`, one deny entry.
    second = compiled(default="deny", allow=[*filler, f"{a}:443", "10.216.0.0/16:9000",
                                             f"{a}:22"], deny=[f"{a}:9000"])  # fmt: skip
    change = second.change_from(first)
    assert change is not None
    assert "delete table" not in change
    assert "10.100." not in change  # the 300 entries that stay are not loaded again
    await egress.apply(pair.pid, change, "test")
    after = ["ConnectionRefusedError", "ok", "ConnectionRefusedError", "ok"]
    assert list(pair.reach((a, 80), (a, 443), (a, 9000), (a, 22)).values()) == after
    # A change computed from a table that is not there any more is refused whole.
    third = compiled(default="deny", allow=[*filler, f"{a}:80", "10.216.0.0/16:8080"])
    stale = third.change_from(first)
    assert stale is not None
    with pytest.raises(egress.EgressUnavailable):
        await egress.apply(pair.pid, stale, "test")
    assert list(pair.reach((a, 80), (a, 443), (a, 9000), (a, 22)).values()) == after
    # Most elements changed: a whole new table instead.
    assert compiled(default="allow").change_from(second) is None
    assert third.change_from(second) is not None  # from the table that is there: fine
    await egress.apply(pair.pid, third.change_from(second) or "", "test")
    assert list(pair.reach((a, 80), (a, 8080), (a, 22)).values()) == [
        "ok", "ok", "ConnectionRefusedError"]  # fmt: skip
