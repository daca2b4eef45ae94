"""base.reply_server.ReplyServer against a real nats-server: each request in a task of its own,
bounded when asked, a failing handler logged without ending the others, a stop that answers
what is under way (within its drain), cancels what outlasts it, and is safe twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from structlog.testing import capture_logs

from base.reply_server import ReplyServer
from fleet.up import NatsServer

SUBJECT = "test.rpc"


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[NATS]:
    conn = await nats.connect(nats_server.url)
    yield conn
    await conn.close()


class Gate:
    """A handler whose requests named ``wait`` wait until released; counts what runs at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.running = 0
        self.most = 0
        self.started = asyncio.Event()
        self.cancelled = 0

    async def handle(self, msg: Msg) -> bytes:
        self.running += 1
        self.most = max(self.most, self.running)
        self.started.set()
        try:
            if msg.data == b"wait":
                await self.release.wait()
            if msg.data == b"fail":
                raise ValueError("the handler broke")
            return b"re:" + msg.data
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1


async def test_a_slow_request_holds_up_no_other_and_a_stop_answers_it_first(nc: NATS) -> None:
    gate = Gate()
    server = ReplyServer(nc, SUBJECT, gate.handle, drain_s=60.0)
    async with server:
        slow = asyncio.create_task(nc.request(SUBJECT, b"wait", timeout=30))
        await asyncio.wait_for(gate.started.wait(), 10)
        fast = await nc.request(SUBJECT, b"quick", timeout=10)
        assert fast.data == b"re:quick"
        stopping = asyncio.create_task(server.stop())
        await asyncio.sleep(0.05)
        assert not stopping.done()  # it drains: the slow request is still under way
        gate.release.set()
        await asyncio.wait_for(stopping, 10)
        assert (await asyncio.wait_for(slow, 10)).data == b"re:wait"
    await server.stop()  # a second stop (the exit already stopped it): no error
    assert gate.cancelled == 0
    with pytest.raises(nats.errors.NoRespondersError):
        await nc.request(SUBJECT, b"quick", timeout=5)


async def test_what_outlasts_the_drain_is_cancelled_and_joined(nc: NATS) -> None:
    gate = Gate()
    server = ReplyServer(nc, SUBJECT, gate.handle, drain_s=0.05)
    async with server:
        waiting = asyncio.create_task(nc.request(SUBJECT, b"wait", timeout=1))
        await asyncio.wait_for(gate.started.wait(), 10)
    assert gate.cancelled == 1
    assert gate.running == 0
    assert len(server.tasks) == 0
    with pytest.raises(nats.errors.TimeoutError):
        await waiting  # no answer: the requester times out


async def test_a_failing_handler_is_logged_and_the_others_are_answered(nc: NATS) -> None:
    gate = Gate()
    with capture_logs() as logs:
        async with ReplyServer(nc, SUBJECT, gate.handle, failed_event="test.rpc_failed"):
            with pytest.raises(nats.errors.TimeoutError):
                await nc.request(SUBJECT, b"fail", timeout=0.5)
            assert (await nc.request(SUBJECT, b"next", timeout=10)).data == b"re:next"
    failed = [e for e in logs if e["event"] == "test.rpc_failed"]
    assert len(failed) == 1
    assert failed[0]["subject"] == SUBJECT
    assert "the handler broke" in failed[0]["error"]


async def test_concurrency_bounds_the_requests_under_way(nc: NATS) -> None:
    gate = Gate()
    async with ReplyServer(nc, SUBJECT, gate.handle, concurrency=2, drain_s=60.0):
        asked = [asyncio.create_task(nc.request(SUBJECT, b"wait", timeout=30)) for _ in range(5)]
        await asyncio.wait_for(gate.started.wait(), 10)
        await nc.flush()
        await asyncio.sleep(0.1)  # room for more to start, were they allowed to
        assert gate.running == 2
        gate.release.set()
        answers = await asyncio.wait_for(asyncio.gather(*asked), 20)
    assert [a.data for a in answers] == [b"re:wait"] * 5
    assert gate.most == 2


async def test_triage_answers_in_the_callback_or_hands_the_request_to_a_task(nc: NATS) -> None:
    gate = Gate()

    async def triage(msg: Msg) -> Awaitable[bytes | None] | None:
        if msg.data == b"now":
            await msg.respond(b"at once")
            return None
        return gate.handle(msg)

    async with ReplyServer(nc, SUBJECT, gate.handle, triage=triage):
        assert (await nc.request(SUBJECT, b"now", timeout=10)).data == b"at once"
        assert gate.most == 0  # no handler ran for it
        assert (await nc.request(SUBJECT, b"later", timeout=10)).data == b"re:later"


async def test_the_owners_cancellation_of_a_stop_propagates_and_leaves_no_task(nc: NATS) -> None:
    gate = Gate()
    server = ReplyServer(nc, SUBJECT, gate.handle, drain_s=None)  # would wait for ever
    await server.__aenter__()
    asked = asyncio.create_task(nc.request(SUBJECT, b"wait", timeout=5))
    await asyncio.wait_for(gate.started.wait(), 10)
    stopping = asyncio.create_task(server.stop())
    await asyncio.sleep(0.05)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(stopping, 10)
    assert gate.cancelled == 1
    assert len(server.tasks) == 0
    asked.cancel()
