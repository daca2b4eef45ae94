"""A gvisor machine on the stack ``fleet up`` starts by default: NATS on the host's loopback
(providers/gvisor/gateway.py). gVisor's loopback is its own, so the daemon reaches NATS at the
namespace's gateway, which pasta maps to the host's loopback; a table of the platform's lets
only NATS's ports through there. On a real runsc sandbox with a real daemon: the machine is
made ready, answers, pauses and resumes; from inside it, NATS's port at the gateway answers and
another port of the host's loopback (a listener of the test's) never does."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.gvisor.gateway import gateway
from providers.sandbox import loopback_ports
from tests.gvisor_stack import gvisor_settings
from tests.integration.test_gvisor import READY_S, paused_and_resumed

#: Connects to argv[1]:argv[2] and prints the first bytes it is sent, or why not.
TRY = r"""
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])) as s:
        print('got', s.recv(16))
except OSError as exc:
    print('failed', type(exc).__name__)
"""


@pytest.fixture
def stack_settings(tmp_path: Path) -> Iterator[Settings]:
    with gvisor_settings(tmp_path, host="127.0.0.1", runtime="gvisor",
                         rpc_timeout_s=60.0) as made:  # fmt: skip
        yield made


@pytest.mark.timeout(900)
async def test_a_gvisor_machine_reaches_nats_on_the_hosts_loopback_and_nothing_else_there(
    stack: FleetClient, stack_settings: Settings
) -> None:
    assert loopback_ports(stack_settings.nats_url)  # the default stack's layout

    async def greet(_: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"secret of the host")
        await w.drain()
        w.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        inst = await stack.create_instance("gv-loopback")
        created = await stack.create_machine(inst.id)
        got = await stack.wait_for(created.id, ["ready", "failed"], timeout_s=READY_S)
        assert got.status == "ready", got.status_reason
        mid, gw = created.id, gateway()
        nats_port = loopback_ports(stack_settings.nats_url)[0]
        tried = await stack.exec(mid, ["python3", "-c", TRY, gw, str(nats_port), "10"])
        assert tried.stdout.startswith("got b'INFO"), tried.stdout
        tried = await stack.exec(mid, ["python3", "-c", TRY, gw, str(port), "3"])
        assert tried.stdout.startswith("failed"), tried.stdout
        # A pause and a resume: the new namespace has the same way to NATS, and no other.
        await paused_and_resumed(stack, mid)
        tried = await stack.exec(mid, ["python3", "-c", TRY, gw, str(port), "3"])
        assert tried.stdout.startswith("failed"), tried.stdout
    finally:
        server.close()
        await server.wait_closed()
