"""How the egress proxy's door finds who holds a connection's other end
(providers/sandbox/pasta_peer.py, providers/sandbox/sock_diag.py, providers/sandbox/netns.py's
records), on this host's own sockets and a real pasta: the kernel's exact lookup of a connection by
its addresses (never a listener that would take such a segment), a host address the host rewrote
matched by its port only when one socket has it, the holder found among recorded processes only
while each is the process recorded, and a pasta recorded as the platform spawned it. On real gvisor
machines at the door: tests/integration/test_gvisor_door.py."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from base import procinfo
from providers.sandbox import SockDiag, attach, pasta_record, recorded_pasta
from providers.sandbox.pasta_peer import LARGE, LARGE_EVERY_S, Found, Holders, Pasta, peer_socket
from tests.waiters import wait_until

#: Holds one connection to the port in argv (and argv[2] more sockets, idle) until its stdin
#: closes, another connection at each line it reads; prints each one's local port.
HOLDER = """
import socket, sys
idle = [socket.socket() for _ in range(int(sys.argv[2]))]
held = [socket.create_connection(("127.0.0.1", int(sys.argv[1])))]
print(held[-1].getsockname()[1], flush=True)
for _ in sys.stdin:
    held.append(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
    print(held[-1].getsockname()[1], flush=True)
"""


@pytest.fixture
def door() -> Iterator[socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))
    yield server
    server.close()


def _inode(s: socket.socket) -> int:
    return os.fstat(s.fileno()).st_ino


def test_a_connection_is_found_by_its_addresses(door: socket.socket) -> None:
    at = door.getsockname()
    client = socket.create_connection(at)
    served, peer = door.accept()
    with client, served, SockDiag() as diag:
        found = diag.tcp(peer, at)
        assert found is not None
        assert (found.inode, found.uid) == (_inode(client), os.geteuid())
        assert diag.tcp(at, peer) is not None  # the door's own end, seen the other way
        assert diag.tcp(("127.0.0.1", 1), at) is None
        # No connection has these ends, and the door listens on its own: never the listener.
        assert diag.tcp(at, ("127.0.0.1", 9)) is None


def _bound_to(source: str, port: int, to: tuple[str, int]) -> socket.socket:
    s = socket.socket()
    s.bind((source, port))
    s.connect(to)
    return s


def test_a_rewritten_host_address_is_matched_by_its_port_only_when_one_socket_has_it(
    door: socket.socket,
) -> None:
    at = door.getsockname()
    first = socket.create_connection(at, source_address=("127.0.0.1", 0))
    port = first.getsockname()[1]
    hosts = {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("127.0.0.3")}
    rewritten = ("127.0.0.2", port)  # as the door would see it after the host's rewrite
    with first, SockDiag() as diag:
        found = peer_socket(diag, rewritten, at, hosts)
        assert found is not None
        assert found.inode == _inode(first)
        # From anywhere but the host (a container that picked the pasta's port): nobody.
        assert peer_socket(diag, rewritten, at) is None
        with _bound_to("127.0.0.3", port, at):
            assert peer_socket(diag, rewritten, at, hosts) is None


async def test_the_holder_is_found_only_while_it_is_the_process_recorded(
    door: socket.socket,
) -> None:
    at = door.getsockname()
    children = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(at[1]), "0",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    ) for _ in range(2)]  # fmt: skip
    try:
        inodes = []
        with SockDiag() as diag:
            for child in children:
                assert child.stdout is not None
                port = int(await asyncio.wait_for(child.stdout.readline(), 30))
                found = diag.tcp(("127.0.0.1", port), at)
                assert found is not None
                inodes.append(found.inode)
        recorded: dict[str, list[Pasta]] = {
            name: [(c.pid, procinfo.start_ticks(c.pid) or 0)]
            for name, c in zip(("m-a", "m-b"), children, strict=True)
        }
        holders = Holders()
        found = holders.find(inodes, recorded, now=0.0)
        assert found == Found({inodes[0]: "m-a", inodes[1]: "m-b"}, 0.0)
        # Another process now (a pid taken again): its start time is not the one recorded.
        recorded["m-a"] = [(children[0].pid, recorded["m-a"][0][1] + 1)]
        assert holders.find(inodes, recorded, now=0.0) == Found({inodes[1]: "m-b"}, 0.0)
    finally:
        for child in children:
            assert child.stdin is not None
            child.stdin.close()
            await child.wait()


async def test_a_pasta_holding_many_sockets_is_read_at_most_once_a_second(
    door: socket.socket,
) -> None:
    """Its machine's new connections wait for its next read; another's never do."""
    at = door.getsockname()
    large = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(at[1]), str(LARGE + 10),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    small = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(at[1]), "0",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert large.stdin is not None
    try:
        with SockDiag() as diag:

            async def next_inode(child: asyncio.subprocess.Process) -> int:
                assert child.stdout is not None
                port = int(await asyncio.wait_for(child.stdout.readline(), 30))
                found = diag.tcp(("127.0.0.1", port), at)
                assert found is not None
                return found.inode

            first, theirs = await next_inode(large), await next_inode(small)
            recorded = {name: [(c.pid, procinfo.start_ticks(c.pid) or 0)]
                        for name, c in (("m-large", large), ("m-small", small))}  # fmt: skip
            holders = Holders()
            assert holders.find({first}, recorded, now=10.0).held == {first: "m-large"}
            large.stdin.write(b"one more\n")
            again = await next_inode(large)
            soon = holders.find({again, theirs}, recorded, now=10.5)
            assert soon == Found({theirs: "m-small"}, LARGE_EVERY_S - 0.5)
            assert holders.find({again}, recorded, now=11.0) == Found({again: "m-large"}, 0.0)
    finally:
        for child in (large, small):
            assert child.stdin is not None
            child.stdin.close()
            await child.wait()


async def test_a_pasta_is_recorded_as_the_platform_spawned_it(tmp_path: Path) -> None:
    holder = await asyncio.create_subprocess_exec("unshare", "--net", "sleep", "infinity")
    try:
        ours = os.stat("/proc/self/ns/net").st_ino
        await wait_until(lambda: os.stat(f"/proc/{holder.pid}/ns/net").st_ino != ours)
        await attach(holder.pid, "m-recorded", [], record=pasta_record(tmp_path, "m-recorded"))
        found = recorded_pasta(tmp_path, "m-recorded")
        assert found is not None
        pid, ticks = found
        assert "pasta" in " ".join(procinfo.cmdline(pid))
        assert procinfo.start_ticks(pid) == ticks
        os.kill(pid, signal.SIGTERM)
        await wait_until(lambda: not procinfo.is_alive(pid, ticks))
        assert recorded_pasta(tmp_path, "m-recorded") is None
    finally:
        holder.kill()
        await holder.wait()
