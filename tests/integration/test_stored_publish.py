"""base.natsconn's stored publisher (``publish_stored``) against a real JetStream: it drops a
retried copy by its Nats-Msg-Id, says what the stream refused, and retries what got no answer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import StreamConfig

from base import natsconn
from fleet.up import NatsServer

STREAM = StreamConfig(name="T", subjects=["t.>"], max_msg_size=1024)


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[NATS]:
    conn = await nats.connect(nats_server.url)
    await conn.jetstream().add_stream(STREAM)
    yield conn
    await conn.close()


async def stored(nc: NATS) -> int:
    return (await nc.jetstream().stream_info("T")).state.messages


async def test_one_at_a_time_stores_once_and_names_a_refusal(nc: NATS) -> None:
    await natsconn.publish_stored(nc, "t.a", b"1", msg_id="m-1")
    await natsconn.publish_stored(nc, "t.a", b"1", msg_id="m-1")  # a retry: dropped
    assert await stored(nc) == 1
    with pytest.raises(natsconn.PublishRejected, match=r"t\.a: .*size"):
        await natsconn.publish_stored(nc, "t.a", b"x" * 2048, msg_id="m-2")
    with pytest.raises(nats.errors.NoRespondersError):  # no stream: retried, then raised
        await natsconn.publish_stored(nc, "u.a", b"1", msg_id="m-3", attempts=2, timeout_s=1)
