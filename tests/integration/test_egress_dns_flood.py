"""A machine that floods the platform's DNS proxy (its resolver, served by its host's
provisioner) with queries an upstream never answers stalls nothing of the provisioner's: another
machine's query is answered, a job of the default executor (where policy loads, image unpacks
and home copies run) still runs, and the flooder's queries past its cap are refused (REFUSED,
and a refusal the events count), never queued."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import cast

import pytest
from dnslib import QTYPE, RCODE, RR, DNSRecord

from contracts.gateway.network import EgressPolicy
from providers.egress import DnsProxy, dns as egress_dns
from providers.sandbox import RESOLVER
from tests.waiters import wait_until

FLOODER, OTHER = "m-0000000000f100d0", "m-00000000000000b0"
#: Queries the flooder sends at once: far more than the proxy's cap, and enough that
#: threads of the default executor each waiting for a silent upstream would hold it for long.
FLOOD = 300


def netns_process() -> subprocess.Popen[bytes]:
    """A process in a network namespace of its own, its loopback up (as a machine's is)."""
    proc = subprocess.Popen(
        ["unshare", "--net", "sh", "-c", "ip link set lo up && echo up && exec sleep 300"],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"up\n"
    return proc


@pytest.fixture
def two_machines() -> Iterator[tuple[int, int]]:
    with netns_process() as flooder, netns_process() as other:
        try:
            yield flooder.pid, other.pid
        finally:
            flooder.kill()
            other.kill()


class Upstream(asyncio.DatagramProtocol):
    """The proxy's upstream: answers ``fast.test`` at once, never answers any other name."""

    transport: asyncio.DatagramTransport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = DNSRecord.parse(data)
        if str(query.q.qname) == "fast.test.":
            reply = query.reply()
            reply.add_answer(*RR.fromZone("fast.test. 30 A 192.0.2.7"))
            self.transport.sendto(bytes(reply.pack()), addr)


@asynccontextmanager
async def upstream() -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Upstream, local_addr=("127.0.0.1", 0))
    try:
        yield transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


class Client(asyncio.DatagramProtocol):
    """A resolver's client inside a machine: its socket made in the machine's namespace."""

    def __init__(self) -> None:
        self.replies: asyncio.Queue[DNSRecord] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.replies.put_nowait(DNSRecord.parse(data))


async def client_in(pid: int) -> tuple[asyncio.DatagramTransport, Client]:
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.connect(RESOLVER)
        s.setblocking(False)
        return s

    sock = await asyncio.to_thread(egress_dns._socket_in, pid, make)
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_datagram_endpoint(Client, sock=sock)
    return transport, client


def query(name: str, qid: int) -> bytes:
    q = DNSRecord.question(name, "A")
    q.header.id = qid
    return bytes(q.pack())


def blocking_job() -> str:
    return "done"


async def test_a_flooding_machine_stalls_no_other_work(two_machines: tuple[int, int]) -> None:
    flooder_pid, other_pid = two_machines
    refused: list[tuple[str, str]] = []

    def on_refused(mid: str, name: str, why: str, destination: str, port: int) -> None:
        refused.append((mid, why))

    async with upstream() as port, DnsProxy(("127.0.0.1", port), [], on_refused) as proxy:
        await proxy.attach(FLOODER, flooder_pid, EgressPolicy())
        await proxy.attach(OTHER, other_pid, EgressPolicy())
        flood, flooder = await client_in(flooder_pid)
        ask, other = await client_in(other_pid)
        try:
            for i in range(FLOOD):
                flood.sendto(query(f"slow{i}.test", i))
                await asyncio.sleep(0)  # the proxy reads one a turn: none dropped by the kernel
            # Another machine's query is answered while the flood's are still waiting...
            ask.sendto(query("fast.test", 7))
            answer = await asyncio.wait_for(other.replies.get(), 10)
            assert answer.header.id == 7
            assert [str(rr.rdata) for rr in answer.rr if rr.rtype == QTYPE.A] == ["192.0.2.7"]
            # ...and the default executor still runs the provisioner's other jobs.
            job = asyncio.get_running_loop().run_in_executor(None, blocking_job)
            assert await asyncio.wait_for(job, 10) == "done"

            # The flooder's excess is refused at once, not queued: each refusal is counted
            # (the egress events' path) and answered REFUSED; only a few queries were taken.
            def flooded() -> list[str]:
                return [why for mid, why in refused if mid == FLOODER]

            # At most its cap at once (twice, should the first ones' upstream time run out).
            await wait_until(lambda: len(flooded()) >= FLOOD - 2 * proxy.caps.concurrency)
            assert set(flooded()) == {"rate-limited"}
            for _ in flooded():
                reply = await asyncio.wait_for(flooder.replies.get(), 10)
                assert reply.header.rcode == RCODE.REFUSED
            assert not any(mid == OTHER for mid, _ in refused)
        finally:
            flood.close()
            ask.close()


async def test_tcp_connections_past_the_cap_are_closed_and_counted(
    two_machines: tuple[int, int],
) -> None:
    """The resolver over TCP: a machine that opens more connections than its cap and leaves
    them idle has the excess closed at once (counted); its others stay open."""
    flooder_pid, _ = two_machines
    refused: list[tuple[str, str, str]] = []

    def on_refused(mid: str, name: str, why: str, destination: str, port: int) -> None:
        refused.append((mid, name, why))

    def connect() -> socket.socket:
        return socket.create_connection(RESOLVER, timeout=10)

    async with upstream() as port, DnsProxy(("127.0.0.1", port), [], on_refused) as proxy:
        await proxy.attach(FLOODER, flooder_pid, EgressPolicy())
        cap = proxy.caps.concurrency
        conns = [await asyncio.to_thread(egress_dns._socket_in, flooder_pid, connect)
                 for _ in range(cap + 4)]  # fmt: skip
        try:
            await wait_until(lambda: len(refused) >= 4)
            assert refused == [(FLOODER, "", "rate-limited")] * 4

            def closed(s: socket.socket) -> bool:
                s.setblocking(False)
                try:
                    return s.recv(1) == b""
                except BlockingIOError:
                    return False

            await wait_until(lambda: sum(closed(s) for s in conns) == 4)
            assert [closed(s) for s in conns[:cap]] == [False] * cap
        finally:
            for s in conns:
                s.close()
