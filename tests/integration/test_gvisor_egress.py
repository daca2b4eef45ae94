"""An instance's egress policy on a gvisor machine (providers/egress/netdev.py), on a real runsc
sandbox with a real daemon, against two listeners of the test's own on an address of the host
the sandbox reaches: under ``default: deny`` with one of them allowed, the machine reaches that
one and never the other, from its start, after a live change of policy, and after a pause and
resume (a new namespace). A policy with a name in it is refused by name, on a running machine
(here) and at a start (test_gvisor.py). The namespaces path: tests/integration/test_egress.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import msgspec
import pytest

from contracts.errors import FleetError
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.integration import test_gvisor as gv
from tests.integration.test_gvisor import READY_S, answers, paused_and_resumed
from tests.waiters import wait_until

#: NATS at an address of the host other than its loopback (test_gvisor.py says why).
nats_server = gv.nats_server

#: One attempt at each of two ports of argv[1] in one exec: first the one that must be refused
#: (argv[3]), without waiting on it, then the allowed one (argv[2]), whose greeting it reads to
#: its end; then it gives the refused one argv[4] seconds more. Prints a line for each, allowed
#: first: the greeting, or why not. A refused packet is dropped (providers/egress/netdev.py),
#: so nothing answers it: its SYN left before the allowed one's, which was answered, and a
#: grace after that proves the drop without waiting out the kernel's connect timeout.
#: The listener closes first: a connection the machine closed first would wait in TIME_WAIT,
#: which this runsc cannot checkpoint (a refused one is closed before it was ever open).
PROBE = r"""
import os, select, socket, sys

def read(s):
    got = b''
    while chunk := s.recv(64):
        got += chunk
    return got.decode()

host, allowed, other, grace = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
family, kind, proto, _, addr = socket.getaddrinfo(host, other, type=socket.SOCK_STREAM)[0]
with socket.socket(family, kind, proto) as refused:
    refused.setblocking(False)
    refused.connect_ex(addr)
    try:
        with socket.create_connection((host, allowed), timeout=30) as s:
            print(read(s))
    except OSError as exc:
        print('failed', type(exc).__name__)
    _, writable, _ = select.select([], [refused], [], grace)
    err = refused.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if writable else None
    if writable and not err:
        refused.setblocking(True)
        refused.settimeout(30)
        print(read(refused))
    else:
        print('failed', 'timeout' if err is None else os.strerror(err))
"""

#: Seconds the refused attempt is given after the allowed one's whole exchange (which went
#: out after it) is done.
GRACE_S = 2.0


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, runtime="gvisor", rpc_timeout_s=60.0)


@dataclass
class Listener:
    port: int = 0
    accepted: int = field(default=0)


@pytest.fixture
async def listeners() -> AsyncIterator[tuple[str, Listener, Listener]]:
    async with greeting_listeners() as made:
        yield made


@asynccontextmanager
async def greeting_listeners() -> AsyncIterator[tuple[str, Listener, Listener]]:
    """Two listeners on an address of the host gVisor's stack reaches; each greets with its
    port and counts what it accepted."""
    host = gv.host_address()
    made: list[tuple[Listener, asyncio.Server]] = []
    for _ in range(2):
        listener = Listener()

        async def greet(
            r: asyncio.StreamReader, w: asyncio.StreamWriter, me: Listener = listener
        ) -> None:
            me.accepted += 1
            w.write(f"hello {me.port}".encode())
            await w.drain()
            w.close()

        server = await asyncio.start_server(greet, host, 0)
        listener.port = server.sockets[0].getsockname()[1]
        made.append((listener, server))
    try:
        yield host, made[0][0], made[1][0]
    finally:
        for _, server in made:
            server.close()
            await server.wait_closed()


async def probe(stack: FleetClient, mid: str, host: str, allowed: int, other: int) -> list[str]:
    """What the machine got from ``allowed`` and from ``other``, in that order (PROBE)."""
    argv = ["python3", "-c", PROBE, host, str(allowed), str(other), str(GRACE_S)]
    got = await stack.exec(mid, argv, timeout_s=90)
    return got.stdout.strip().splitlines()


async def reaches_only(
    stack: FleetClient, mid: str, host: str, allowed: Listener, other: Listener
) -> None:
    """The machine reaches ``allowed`` and never ``other`` (which accepts nothing)."""
    before = other.accepted
    reached, said = await probe(stack, mid, host, allowed.port, other.port)
    assert reached == f"hello {allowed.port}", reached
    assert said.startswith("failed"), said
    assert other.accepted == before


@pytest.mark.timeout(900)
async def test_a_gvisor_machine_reaches_the_one_allowed_address_and_port_and_not_another(
    stack: FleetClient, listeners: tuple[str, Listener, Listener]
) -> None:
    host, first, second = listeners
    inst = await stack.create_instance("gv-egress-cidr")
    await stack.set_network_policy(inst.id, default="deny", allow=[f"{host}:{first.port}"])
    created = await stack.create_machine(inst.id)
    got = await stack.wait_for(created.id, ["ready", "failed"], timeout_s=READY_S)
    assert got.status == "ready", got.status_reason
    mid = created.id
    await reaches_only(stack, mid, host, first, second)

    # Live: the other one allowed instead, on the running machine.
    await stack.set_network_policy(inst.id, default="deny", allow=[f"{host}:{second.port}"])
    await reaches_only(stack, mid, host, second, first)

    # A name is not enforced here: the running machine is listed as failed by name, and keeps
    # the table it had (the first listener, which the named policy would allow, stays shut).
    named = await stack.set_network_policy(
        inst.id, default="deny", allow=[f"{host}:{first.port}", "x.test"]
    )
    assert [f.machine_id for f in named.failed] == [mid], named
    assert "x.test" in named.failed[0].message, named.failed[0]
    await reaches_only(stack, mid, host, second, first)
    await stack.set_network_policy(inst.id, default="deny", allow=[f"{host}:{second.port}"])

    # A pause and resume: the restored sandbox is in a new namespace, under the same policy.
    await paused_and_resumed(stack, mid)
    await reaches_only(stack, mid, host, second, first)


#: A home its copy cannot take: 30 directories of 200-character names, past PATH_MAX.
TOO_DEEP = r"""
import os
os.makedirs('deep', exist_ok=True)
os.chdir('deep')
for _ in range(30):
    os.mkdir('d' * 200)
    os.chdir('d' * 200)
open('f', 'w').write('x')
"""


@pytest.mark.timeout(900)
async def test_a_failed_memory_fork_leaves_its_source_running_under_its_policy(
    stack: FleetClient, listeners: tuple[str, Listener, Listener]
) -> None:
    """The tenant makes its own fork's home copy fail (a home past PATH_MAX): the fork is
    refused, and the source, restored from its checkpoint into a new namespace, runs on with
    its daemon answering and its policy holding, tested from inside it."""
    host, first, second = listeners
    inst = await stack.create_instance("gv-egress-fork")
    await stack.set_network_policy(inst.id, default="deny", allow=[f"{host}:{first.port}"])
    created = await stack.create_machine(inst.id)
    got = await stack.wait_for(created.id, ["ready", "failed"], timeout_s=READY_S)
    assert got.status == "ready", got.status_reason
    mid = created.id
    made = await stack.exec(mid, ["python3", "-c", TOO_DEEP], timeout_s=60)
    assert made.exit_code == 0, made.stderr
    with pytest.raises(FleetError):
        await stack.fork_machine(mid, memory=True)
    assert (await stack.get_machine(mid)).status == "ready"
    await wait_until(lambda: answers(stack, mid), timeout=120, every=0.5)
    await reaches_only(stack, mid, host, first, second)
    forks = [m for m in await stack.list_machines(inst.id) if m.id != mid]
    assert forks == [], forks
