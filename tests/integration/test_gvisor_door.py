"""Attacks on the egress proxy's door on the host (providers/egress/proxy_door.py), which serves
gvisor machines as the machine whose recorded pasta holds a connection's other end. On real
runsc sandboxes with real daemons, a real upstream on the host:

- a process of the host that marks itself as a machine's pasta is (``FLEET_NETNS_OF=<id>``,
  what any local user can set) is nobody's: 403, nothing served as the machine;
- root in one gvisor machine flooding the door with thousands of connections leaves the
  provisioner's default executor free (its machines' starts, their DNS and proxy sockets,
  their homes' copies), another machine's requests served through the door, and another
  tenant's machine starting.

The lookups themselves, on the host's own sockets: tests/integration/test_pasta_peer.py.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from aiohttp import web

from bench.gvisor_door import FLOOD, at_the_door
from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.sandbox import NETNS_OF
from tests.gvisor_stack import gvisor_settings, host_address, module_stack
from tests.httpserve import start_site
from tests.integration.test_gvisor import READY_S
from tests.waiters import wait_until

__all__ = ["module_stack"]  # the fixture: ``stack``
pytestmark = pytest.mark.asyncio(loop_scope="module")

#: A CONNECT to the door (argv: its host and port, the target) and the answer's first line.
CONNECT = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
s.sendall(b"CONNECT " + sys.argv[3].encode() + b" HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
print(s.recv(4096).decode().splitlines()[0])
"""


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    door = _free_port(host_address())
    with gvisor_settings(tmp_path_factory.mktemp("gvisor-door"), runtime="gvisor",
                         rpc_timeout_s=60.0, secrets_proxy_port=door) as made:  # fmt: skip
        yield made


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def upstream() -> AsyncIterator[int]:
    """Plain HTTP on the host's address: ``/`` answers ``upstream``."""

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="upstream")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    yield await start_site(runner, host_address())
    await runner.cleanup()


async def _machine(stack: FleetClient, name: str) -> str:
    """A ready gvisor machine of a new instance that may reach the host's address."""
    inst = await stack.create_instance(name)
    await stack.set_network_policy(inst.id, allow=[host_address()])  # the host's own: named
    created = await stack.create_machine(inst.id)
    got = await stack.wait_for(created.id, ["ready", "failed"], timeout_s=READY_S)
    assert got.status == "ready", got.status_reason
    return created.id


async def test_a_host_process_marked_as_a_machines_pasta_is_nobodys(
    stack: FleetClient, stack_settings: Settings, upstream: int
) -> None:
    victim = await _machine(stack, "door-victim")
    host = host_address()
    # Any local user can start a process with this mark; machine ids show in ps.
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CONNECT, host, str(stack_settings.secrets_proxy_port),
        f"{host}:{upstream}", env={**os.environ, NETNS_OF: victim},
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(child.communicate(), 60)
    assert out.decode().split()[1:2] == ["403"], out


@pytest.mark.timeout(900)
async def test_a_flood_at_the_door_leaves_the_host_and_other_machines_served(
    stack: FleetClient, stack_settings: Settings, upstream: int
) -> None:
    victim = await _machine(stack, "door-served")
    attacker = await _machine(stack, "door-flood")
    host, door = host_address(), stack_settings.secrets_proxy_port
    argv = ["python3", "-c", FLOOD, host, str(door), "4000", "60", "/nonexistent"]
    flood = asyncio.create_task(stack.exec(attacker, argv, user="root", timeout_s=240))
    try:
        await wait_until(lambda: at_the_door(door) >= 200 or flood.done(), timeout=180, every=0.5)
        assert not flood.done(), flood.result()
        # The provisioner's default executor (this process's: the stack runs here) is free.
        await asyncio.wait_for(asyncio.to_thread(int), 20)
        # Another machine's request through the door is served.
        proxied = ["curl", "-sS", "--max-time", "60", "-x", f"http://{host}:{door}",
                   f"http://{host}:{upstream}/"]  # fmt: skip
        got = await stack.exec(victim, proxied, timeout_s=90)
        assert (got.exit_code, got.stdout) == (0, "upstream"), got.stderr
        # Another tenant's machine starts.
        await _machine(stack, "door-starts")
        assert not flood.done(), "the flood ended before the checks"
    finally:
        said = await flood
    attempts = int(said.stdout.split()[0]) if said.stdout else 0
    assert attempts >= 4000, said.stdout + said.stderr
