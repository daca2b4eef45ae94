"""base.natsconn's stored publisher against a real JetStream: one message at a time
(``publish_stored``) and the batch mode (``StoredBatches``) store alike, drop a retried copy
by its Nats-Msg-Id, say what the stream refused, and retry what got no answer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import StreamConfig

from base import natsconn
from base.natsconn import Message, StoredBatches
from fleet.embedded import NatsServer

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


async def test_a_batch_is_stored_once_and_what_failed_is_said(nc: NATS) -> None:
    async with StoredBatches(nc, attempts=2, timeout_s=1.0) as batches:
        ok = [Message(f"b-{i}", "t.b", b"%d" % i) for i in range(5)]
        assert await batches.store(ok) == {}
        assert await batches.store(ok[:2]) == {}  # a retried copy: dropped by its id
        assert await stored(nc) == 5
        failed = await batches.store([
            Message("big", "t.b", b"x" * 2048),  # refused by the stream
            Message("lost", "u.b", b"1"),  # no stream: no acknowledgement, tried again
            Message("fine", "t.b", b"1"),
        ])  # fmt: skip
    assert set(failed) == {"big", "lost"}
    assert "no acknowledgement" in failed["lost"]
    assert "size" in failed["big"]  # the stream's own reason
    assert await stored(nc) == 6
