"""A local machine's connection to NATS goes through pasta's sockets with Nagle off
(providers/sandbox/pasta_nodelay.py): with it on, two writes of the daemon with no answer between
them waited for a delayed ACK, 40 ms each."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from base.procinfo import env_roots
from contracts.status import MachineStatus
from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.sandbox import NETNS_OF, tcp_sockets


def nats_side(pid: int, port: int) -> list[int]:
    """TCP_NODELAY of each of ``pid``'s sockets connected to the host's NATS port."""
    flags = []
    for sock in tcp_sockets(pid):
        with sock:
            try:
                peer = sock.getpeername()
            except OSError:  # not connected: a pooled socket, a listener
                continue
            if peer[1] == port:
                flags.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
    return flags


async def test_the_machines_connection_to_nats_is_not_nagled(
    stack: FleetClient, stack_settings: Settings
) -> None:
    inst = await stack.create_instance("nagle")
    machine = await stack.create_machine(inst.id)
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=60)
    assert done.status is MachineStatus.READY, done.status_reason
    port = urlsplit(stack_settings.nats_url).port
    assert port is not None
    [pasta] = env_roots(NETNS_OF, machine.id)
    flags = nats_side(pasta, port)
    assert flags, "no connection of the machine's pasta to NATS"
    assert all(flags), flags
