"""Tunnels under the real NATS permissions: a machine cannot inject bytes into another
machine's tunnel (neither as that machine's program, nor as the platform's client), nor read
either side of it, and the tunnel it attacked stays whole."""

from __future__ import annotations

import asyncio
import hashlib

from contracts.bus import subjects
from contracts.daemon import streams
from contracts.ports import TUNNEL_CONNECT, TunnelConnectParams
from controlplane.bus import Bus
from controlplane.calls.byte_stream_join import join
from controlplane.calls.daemon_client import DaemonClient, static_key
from controlplane.security.crypto import SecretBox
from controlplane.store import Store
from fleet.up import NatsServer
from tests.conftest import SpawnDaemon
from tests.integration.nats_auth.helpers import Attacker, boot, connect_as, enroll
from tests.integration.test_tunnels import digest


async def test_machine_a_cannot_publish_on_or_read_machine_bs_tunnel(
    callout: None, bus: Bus, store: Store, box: SecretBox, spawn_daemon: SpawnDaemon,
    nats_server: NatsServer,
) -> None:  # fmt: skip
    server = await asyncio.start_server(digest, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    b, b_token = await enroll(store, box)
    await boot(bus, spawn_daemon, b, b_token)
    opened = await DaemonClient(bus.nc, keys=static_key(b_token)).call(
        b, TUNNEL_CONNECT, TunnelConnectParams(port=port)
    )
    sid = opened.stream_id
    a, a_token = await enroll(store, box)
    attacker = Attacker()
    nc = await connect_as(nats_server, a, a_token, attacker)
    try:
        async with await join(bus.nc, b, sid) as tunnel:
            for subject in (subjects.stream_from_machine(b, sid),
                            subjects.stream_to_machine(b, sid)):  # fmt: skip
                await nc.subscribe(subject)
                await attacker.violated("subscription", subject)
            forged = [
                subjects.stream_from_machine(b, sid),  # as B's program answering its user
                subjects.stream_to_machine(b, sid),  # as B's user writing into B's program
            ]
            for subject in forged:
                await nc.publish(subject, streams.encode_data(0, b"GET /steal HTTP/1.0\r\n\r\n"))
            await nc.flush()
            for subject in forged:
                await attacker.violated("publish", subject)
            await tunnel.send(b"the user's own bytes")
            await tunnel.end()
            answer = b"".join([c async for c in tunnel])
        assert answer == hashlib.sha256(b"the user's own bytes").hexdigest().encode()
    finally:
        await nc.close()
        server.close()
