"""The egress proxy's door on the host (providers/egress/proxy_door.py): a connection is served
as the machine whose process holds its other end (a child process stands for a machine's
pasta here), and one no machine holds is refused before anything is read. On real gvisor
machines: tests/integration/test_gvisor_secrets.py."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import sys
from collections.abc import AsyncIterator

import pytest

from base import procinfo
from contracts.gateway.network import EgressPolicy
from controlplane.store import StoredSecret
from providers.egress import EgressProxy, HostDoor, Platform
from providers.sandbox import Pasta

#: A process that sends a CONNECT to the door (argv: its port) and prints the answer's line.
CLIENT = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"CONNECT 127.0.0.1:9 HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
print(s.recv(4096).decode())
"""


async def _policy(_: str) -> EgressPolicy:
    return EgressPolicy()


async def _none(*_: object) -> list[StoredSecret]:
    return []


async def _never(*_: object) -> ssl.SSLContext:
    raise AssertionError("nothing is intercepted")


async def _unused(*_: object) -> None:
    raise AssertionError("nothing is used")


@pytest.fixture
async def door() -> AsyncIterator[tuple[HostDoor, dict[str, list[Pasta]]]]:
    platform = Platform(policy=_policy, secrets=_none, leaf=_never, open_value=str,
                        used=_unused)  # fmt: skip
    pids: dict[str, list[Pasta]] = {}
    proxy = EgressProxy(platform, frozenset(), ssl.create_default_context())
    door = HostDoor(proxy, ("127.0.0.1", 0), lambda o: pids.get(o[0], []))
    async with proxy, door:
        yield door, pids


def _recorded(pid: int) -> Pasta:
    ticks = procinfo.start_ticks(pid)
    assert ticks is not None
    return pid, ticks


async def _answer_to(door: HostDoor, machine: str | None, pids: dict[str, list[Pasta]]) -> str:
    assert door._listener is not None
    port = door._listener.getsockname()[1]
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, str(port), stdout=asyncio.subprocess.PIPE
    )
    if machine is not None:
        pids[machine] = [_recorded(child.pid)]
    out, _ = await asyncio.wait_for(child.communicate(), 30)
    return out.decode()


async def test_a_connection_is_its_holders_machine(
    door: tuple[HostDoor, dict[str, list[Pasta]]],
) -> None:
    d, pids = door
    d.attach("m-a", "inst-a", ["slot-a"])
    d.attach("m-b", "inst-b", ["m-b"])
    said = await _answer_to(d, "slot-a", pids)
    # Served as m-a: its instance's policy refused the host's loopback (not the door).
    assert "403" in said
    assert "refused by the egress proxy" in said


async def test_a_connection_no_machine_holds_is_refused(
    door: tuple[HostDoor, dict[str, list[Pasta]]],
) -> None:
    d, pids = door
    d.attach("m-a", "inst-a", ["m-a"])
    pids["m-a"] = [_recorded(os.getpid())]  # this process holds nothing of the child's connection
    said = await _answer_to(d, None, pids)
    assert "403" in said
    assert "this host's machines only" in said


async def test_a_connection_taken_in_as_the_door_closes_is_closed_at_once() -> None:
    """Its accept cancelled midway, asyncio still makes the connection's stream: one that
    arrives once the door has closed is closed, never queued where nobody closes it."""
    platform = Platform(policy=_policy, secrets=_none, leaf=_never, open_value=str,
                        used=_unused)  # fmt: skip
    proxy = EgressProxy(platform, frozenset(), ssl.create_default_context())
    door = HostDoor(proxy, ("127.0.0.1", 0), lambda o: [])
    async with proxy, door:
        pass
    ours, theirs = socket.socketpair()
    try:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_accepted_socket(door._protocol, ours)
        assert transport.is_closing()
        assert door._waiting == []
    finally:
        theirs.close()
