"""What the egress tests on machines share: the outside host (bench/outside.py: one server on
two IPv4 addresses and an IPv6 one), the upstream DNS server the platform's DNS proxy asks (A
and AAAA records the test chooses), the stack wired to that upstream, and ways to look from
inside a machine (a DNS query over TCP to its resolver; its egress-denied events)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from dnslib import QTYPE, RR
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from bench.outside import Outside, outside_host
from contracts.bus.events import MachineEgressDenied
from contracts.bus.subjects import EventKind
from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.sandbox import RESOLVER

__all__ = ["outside", "stack_settings", "zone"]
REFUSED = "ConnectionRefusedError"
#: DNS's record types: an IPv4 address, an IPv6 one.
A, AAAA = 1, 28


class Zone(BaseResolver):  # type: ignore[misc]
    """Each name's addresses: A records for the IPv4 ones, AAAA for the IPv6 ones."""

    def __init__(self, names: dict[str, tuple[str, ...]]) -> None:
        self.names = names
        self.asked: list[str] = []

    def resolve(self, request: object, handler: object) -> object:
        name = str(request.q.qname).rstrip(".")  # type: ignore[attr-defined]
        qtype = request.q.qtype  # type: ignore[attr-defined]
        self.asked.append(name)
        reply = request.reply()  # type: ignore[attr-defined]
        for address in self.names.get(name, ()):
            v6 = ipaddress.ip_address(address).version == 6
            if qtype == (QTYPE.AAAA if v6 else QTYPE.A):
                kind = "AAAA" if v6 else "A"
                reply.add_answer(*RR.fromZone(f"{name}. 30 {kind} {address}"))
        return reply


@pytest.fixture
def outside(tmp_path: Path, bare_repo: Path) -> Iterator[Outside]:
    with outside_host(tmp_path / "outside", repo=bare_repo) as host:
        yield host


@pytest.fixture
def zone(outside: Outside, docker_gateway: str) -> Iterator[tuple[Zone, int]]:
    """The upstream DNS server: names of the outside host, and rebinding ones."""
    names = {
        "a.example.test": (outside.address,),
        "example.test.evil": (outside.address2,),
        "other.test": (outside.address2,),
        "rebind.example.test": ("127.0.0.1",),
        "platform.example.test": (docker_gateway,),
        "six.example.test": (outside.address6,),
        "rebind6.example.test": ("::1",),
    }
    resolver = Zone(names)
    quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    server = DNSServer(resolver, port=0, address="127.0.0.1", logger=quiet)  # the kernel's
    port: int = server.server.server_address[1]
    server.start_thread()
    yield resolver, port
    server.stop()
    server.server.server_close()


@pytest.fixture
def stack_settings(settings: Settings, zone: tuple[Zone, int]) -> Settings:
    return msgspec.structs.replace(settings, egress_dns_upstream=f"127.0.0.1:{zone[1]}")


#: One query over TCP to the machine's resolver (argv[1]: the name, argv[2]: the record type):
#: the rcode, the count of answers, and the last answer's address.
TCP_QUERY = f"""
import json, socket, struct, sys
qtype = int(sys.argv[2])
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in sys.argv[1].split(".")) + b"\\0"
q += struct.pack(">HH", qtype, 1)
with socket.create_connection({RESOLVER!r}, timeout=5) as s:
    s.sendall(struct.pack(">H", len(q)) + q)
    size = struct.unpack(">H", s.recv(2))[0]
    reply = b""
    while len(reply) < size:
        reply += s.recv(size - len(reply))
answers = struct.unpack(">H", reply[6:8])[0]
family, width = (socket.AF_INET6, 16) if qtype == 28 else (socket.AF_INET, 4)
address = socket.inet_ntop(family, reply[-width:]) if answers else ""
print(json.dumps([reply[3] & 15, answers, address]))
"""


async def over_tcp(stack: FleetClient, machine_id: str, name: str, qtype: int = A) -> list[object]:
    argv = ["python3", "-c", TCP_QUERY, name, str(qtype)]
    result = await stack.exec(machine_id, argv, timeout_s=30)
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
