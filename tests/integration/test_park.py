"""A daemon's NATS connection parked for a pause (daemon/supervision/park.py), on a real
nats-server: let
go, its reconnect held in nats-py's own loop while parked, taken back on the resume with its
subscriptions replayed, through nats-py's public hooks only."""

from __future__ import annotations

import asyncio
import contextlib

import nats

from base import natsconn
from daemon.supervision.park import Parked, Parking
from fleet.up import NatsServer

WAIT_S = 10.0


async def test_a_parked_connection_is_held_until_the_resume_then_serves_again(
    nats_server: NatsServer,
) -> None:
    held = asyncio.Event()
    errors: list[Exception] = []

    async def log_error(exc: Exception) -> None:
        errors.append(exc)

    parking = Parking(0.05, log_error)

    async def on_error(exc: Exception) -> None:
        if isinstance(exc, Parked):
            held.set()
        await parking.on_error(exc)

    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def heard(msg: nats.aio.msg.Msg) -> None:
        got.put_nowait(msg.data)

    nc = await natsconn.connect(nats_server.url, name="parked", wait_s=(0.05, 0.05),
                                error_cb=on_error,
                                reconnect_to_server_handler=parking.choose)  # fmt: skip
    other = await nats.connect(nats_server.url)
    try:
        await nc.subscribe("park.test", cb=heard)
        await nc.flush()
        assert await parking.park(nc)
        await asyncio.wait_for(held.wait(), WAIT_S)  # nats-py's reconnect loop, held
        assert not nc.is_connected
        assert await parking.unpark()
        assert not await parking.unpark()  # once
        async with asyncio.timeout(WAIT_S):
            while got.empty():  # the subscription is back once the resume reconnected
                await other.publish("park.test", b"back")
                await other.flush()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(got.get(), 0.1)
                    break
        assert nc.is_connected
        assert not errors, errors
    finally:
        await other.close()
        await nc.close()
