"""base.natsconn.publish_stored's retries on a stand-in connection (the real stream:
tests/integration/test_stored_publish.py): what it tries again, what it logs, and how a budget
bounds it."""

from __future__ import annotations

from typing import Any, cast

import msgspec
import nats.errors
import pytest
from nats.aio.client import Client as NATS
from structlog.testing import capture_logs

from base import natsconn


class Reply:
    def __init__(self, data: bytes) -> None:
        self.data = data


class Server:
    """Answers each request with the next of ``answers``: an ack's JSON, or an exception."""

    def __init__(self, *answers: dict[str, Any] | Exception) -> None:
        self.answers = list(answers)
        self.timeouts: list[float] = []

    async def request(self, subject: str, payload: bytes, *, timeout: float,
                      headers: dict[str, str]) -> Reply:  # fmt: skip
        self.timeouts.append(timeout)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return Reply(msgspec.json.encode(answer))


UNAVAILABLE = {"stream": "", "error": {"code": 503, "description": "JetStream unavailable"}}
STORED = {"stream": "T", "seq": 1}


async def test_an_unavailable_stream_is_tried_again_and_each_retry_logged() -> None:
    server = Server(UNAVAILABLE, nats.errors.NoRespondersError(), STORED)
    with capture_logs() as logs:
        await natsconn.publish_stored(cast(NATS, server), "t.a", b"1", msg_id="m-1")
    assert len(server.timeouts) == 3
    retries = [e for e in logs if e["event"] == "nats.publish_retry"]
    assert [e["attempt"] for e in retries] == [1, 2]
    assert "StreamUnavailable" in retries[0]["error"]
    assert "NoRespondersError" in retries[1]["error"]


async def test_the_last_failure_is_raised_once_the_attempts_are_spent() -> None:
    server = Server(UNAVAILABLE)
    with pytest.raises(natsconn.StreamUnavailable):
        await natsconn.publish_stored(cast(NATS, server), "t.a", b"1", msg_id="m-1", attempts=2)
    assert len(server.timeouts) == 2


async def test_a_refusal_is_raised_at_once() -> None:
    server = Server({"error": {"code": 400, "description": "message size exceeds maximum"}})
    with pytest.raises(natsconn.PublishRejected, match=r"t\.a: message size"):
        await natsconn.publish_stored(cast(NATS, server), "t.a", b"1", msg_id="m-1")
    assert len(server.timeouts) == 1


async def test_a_budget_bounds_each_try_and_gives_up_before_a_wait_past_it() -> None:
    server = Server(nats.errors.TimeoutError())
    with pytest.raises(nats.errors.TimeoutError):
        await natsconn.publish_stored(cast(NATS, server), "t.a", b"1", msg_id="m-1",
                                      budget_s=0.3)  # fmt: skip
    # The first wait (at most 0.25 s) fits in 0.3 s; the second (at least 0.25 s) cannot.
    assert len(server.timeouts) == 2
    assert all(t <= 0.3 for t in server.timeouts)
