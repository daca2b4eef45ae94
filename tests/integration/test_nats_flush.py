"""base.natsconn's client against a real nats-server: its ``flush`` puts every command written
before it on the wire ahead of its PING, so once the PONG is back the server has them (a
subscription is known to another connection's request)."""

from __future__ import annotations

import pytest
from nats.aio.msg import Msg

from base import natsconn
from fleet.up import NatsServer


async def test_a_flush_sends_what_is_pending_before_its_ping(
    nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    nc = await natsconn.connect(nats_server.url, name="tests.flush")
    try:
        wire: list[bytes] = []
        transport = nc._transport
        assert transport is not None
        write, writelines = transport.write, transport.writelines
        monkeypatch.setattr(transport, "write", lambda data: (wire.append(data), write(data)))
        monkeypatch.setattr(
            transport, "writelines", lambda lines: (wire.extend(lines), writelines(lines))
        )
        await nc.subscribe("svc.a", queue="q", cb=None)
        await nc.subscribe("svc.b", queue="q", cb=None)
        await nc.flush()
        sent = b"".join(wire)
        assert sent.index(b"SUB svc.b") < sent.index(b"PING"), sent
    finally:
        await nc.close()


async def test_a_request_right_after_another_connection_subscribed_is_answered(
    nats_server: NatsServer,
) -> None:
    asker = await natsconn.connect(nats_server.url, name="tests.asker")
    try:
        for i in range(200):
            server = await natsconn.connect(nats_server.url, name="tests.server")
            try:

                async def answer(msg: Msg) -> None:
                    await msg.respond(b"ok")

                await server.subscribe(f"svc.{i}", queue="q", cb=answer)
                await server.flush()
                assert (await asker.request(f"svc.{i}", b"", timeout=10)).data == b"ok"
            finally:
                await server.close()
    finally:
        await asker.close()
