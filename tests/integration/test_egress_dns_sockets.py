"""The DNS proxy's sockets in a machine's namespace are owned whatever happens to the attach
that makes them: cancelled at any await, raced by a second attach of the same machine, or
detached half way. Each made on a thread in the namespace, a socket the attach stopped
waiting for was once dropped unclosed (a ResourceWarning at some later test's set-up)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from contracts.gateway.network import EgressPolicy
from providers.egress import DnsProxy, dns as egress_dns, nftables as egress
from tests.waiters import wait_until

MACHINE = "m-0123456789abcdef"


@pytest.fixture
def netns_pid() -> Iterator[int]:
    """A process in a network namespace of its own, its loopback up (as a machine's is)."""
    with subprocess.Popen(
        ["unshare", "--net", "sh", "-c", "ip link set lo up && echo up && exec sleep 120"],
        stdout=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"up\n"
        try:
            yield proc.pid
        finally:
            proc.kill()


def sockets() -> set[str]:
    """This process's open sockets."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):
            if (target := os.readlink(f"/proc/self/fd/{fd}")).startswith("socket:"):
                out.add(target)
    return out


async def no_new_sockets(before: set[str]) -> None:
    # A transport closes on the loop's next rounds; a thread may finish after its caller left.
    await wait_until(lambda: sockets() <= before, timeout=10)


async def test_cancelled_attaches_leave_no_socket(netns_pid: int) -> None:
    before = sockets()
    async with DnsProxy(("127.0.0.1", 9), platform=[]) as proxy:
        for rounds in range(12):  # cancelled after 0, 1, ... turns of the loop
            attach = asyncio.create_task(proxy.attach(MACHINE, netns_pid, EgressPolicy()))
            for _ in range(rounds):
                await asyncio.sleep(0)
            attach.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await attach
            proxy.detach(MACHINE)
            await no_new_sockets(before)
        # Whole, it serves: the resolver's address answers inside the namespace.
        await proxy.attach(MACHINE, netns_pid, EgressPolicy())
        assert len(sockets() - before) == 3
    await no_new_sockets(before)


async def test_a_cancelled_attach_returns_once_its_socket_is_closed(
    netns_pid: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread that makes a socket cannot be stopped: a cancelled attach waits for it, or
    a socket made after the caller moved on would be open beside the next attach's (CI: four
    sockets where an attach makes three)."""
    made: list[socket.socket] = []
    started = threading.Event()
    resolver_socket = egress_dns._resolver_socket

    def slow(kind: socket.SocketKind = socket.SOCK_DGRAM) -> socket.socket:
        started.set()
        time.sleep(0.3)
        made.append(resolver_socket(kind))
        return made[-1]

    monkeypatch.setattr(egress_dns, "_resolver_socket", slow)
    async with DnsProxy(("127.0.0.1", 9), platform=[]) as proxy:
        attach = asyncio.create_task(proxy.attach(MACHINE, netns_pid, EgressPolicy()))
        await wait_until(started.is_set, timeout=10)
        attach.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await attach
        assert [s.fileno() for s in made] == [-1]  # made, and closed before the attach returned


async def test_two_attaches_at_once_make_one_set_of_sockets(netns_pid: int) -> None:
    before = sockets()
    async with DnsProxy(("127.0.0.1", 9), platform=[]) as proxy:
        await asyncio.gather(*(proxy.attach(MACHINE, netns_pid, EgressPolicy()) for _ in range(3)))
        assert len(sockets() - before) == 3  # UDP, TCP and the refusals' log
        proxy.detach(MACHINE)
        await no_new_sockets(before)


async def test_a_detach_while_attaching_closes_what_the_attach_makes(netns_pid: int) -> None:
    before = sockets()
    async with DnsProxy(("127.0.0.1", 9), platform=[]) as proxy:
        for rounds in range(12):
            attach = asyncio.create_task(proxy.attach(MACHINE, netns_pid, EgressPolicy()))
            for _ in range(rounds):
                await asyncio.sleep(0)
            proxy.detach(MACHINE)
            await attach
            proxy.detach(MACHINE)
            await no_new_sockets(before)


async def test_a_pid_in_the_hosts_namespace_gets_no_ruleset_and_no_resolver() -> None:
    """A machine's process that ended may leave its pid to a process of the host: a policy
    written there would cut the host off (as it once did the host's own DNS)."""
    host_pid = os.getpid()
    with pytest.raises(egress.EgressUnavailable, match="host's net namespace"):
        await egress.apply(host_pid, "add table inet fleet_egress_probe\n", "m-0123456789abcdef")
    nft = ["nft", "list", "tables"]
    listed = await asyncio.to_thread(subprocess.run, nft, capture_output=True, text=True)
    assert "fleet_egress_probe" not in listed.stdout
    async with DnsProxy(("127.0.0.1", 9), platform=[]) as proxy:
        with pytest.raises(egress.EgressUnavailable, match="host's net namespace"):
            await proxy.attach(MACHINE, host_pid, EgressPolicy())
