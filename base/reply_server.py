"""One NATS request/reply serving loop: the daemon's RPC, a host's methods, codemode's jobs
and the auth callout each give it only their own decoding and handling."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from base.tasks import OwnedTasks
from base.ticker import Ticker

#: A request's handling: its answer (None: none to send, or already sent).
Handle = Callable[[Msg], Awaitable[bytes | None]]
#: What runs in the subscription's callback first: the request's handling to run in a task of
#: its own, or None when it was answered right there.
Triage = Callable[[Msg], Awaitable[Awaitable[bytes | None] | None]]
Reply = Callable[[Msg, bytes | None], Awaitable[None]]


async def respond(msg: Msg, answer: bytes | None) -> None:
    """Send ``answer`` to whoever asked, if there is one and anyone waits."""
    if answer is not None and msg.reply:
        await msg.respond(answer)


@dataclass(frozen=True)
class Working:
    """While a request is handled whose asker asked for them (``ask_header`` among the request's
    headers), a notice to the asker at once and every ``every_s``: an empty message with
    ``header``, before the answer on the same inbox (which carries the request's headers back,
    as nats-py's ``respond`` does: hence two names). An asker that has heard one and then hears
    nothing for a few of those knows its server is gone (restarted, killed) rather than slow,
    and need not wait out its whole timeout. An asker that did not ask (one of an older
    release, a plain ``request``) gets its answer alone."""

    every_s: float
    header: str
    ask_header: str

    def asked(self, msg: Msg) -> bool:
        return bool(msg.reply) and msg.headers is not None and self.ask_header in msg.headers

    @contextlib.asynccontextmanager
    async def told(self, nc: NATS, reply: str) -> AsyncIterator[None]:
        """The notices while the block runs (their task ended with it)."""

        async def tell() -> None:
            await nc.publish(reply, b"", headers={self.header: "1"})

        # The first before the work begins: an asker knows from then on that it was taken.
        with contextlib.suppress(nats.errors.Error):
            await tell()
        async with Ticker(self.every_s, tick=tell, name=f"working:{reply}",
                          failed_event="reply_server.working_failed"):  # fmt: skip
            yield


class ReplyServer:
    """Async context manager: serves ``subject`` (in ``queue``, if given) while entered.

    Each request is handled in a task of its own (a slow one holds up no other), in one
    ``OwnedTasks``; at most ``concurrency`` at once if given (the subscription's callback
    waits for a slot, so the rest waits in the subscription). Stopping (``stop()`` or the
    exit; safe twice) unsubscribes, lets the requests under way finish for up to ``drain_s``
    (``None``: however long they take), then cancels and joins the rest. A handler's
    unexpected exception is logged as ``failed_event`` with the request's subject; the
    requester times out."""

    def __init__(
        self, nc: NATS, subject: str, handle: Handle, *, queue: str = "",
        concurrency: int | None = None, drain_s: float | None = None,
        failed_event: str = "rpc.failed", triage: Triage | None = None,
        reply: Reply = respond, working: Working | None = None,
    ) -> None:  # fmt: skip
        self._nc = nc
        self.subject = subject
        self._queue = queue
        self._handle = handle
        self._triage = triage
        self._reply = reply
        self._working = working
        self._slots = asyncio.Semaphore(concurrency or sys.maxsize)
        self.tasks = OwnedTasks(f"rpc:{subject}", drain_s=drain_s, failed_event=failed_event)
        self._sub: Subscription | None = None

    async def __aenter__(self) -> Self:
        self._sub = await self._nc.subscribe(self.subject, queue=self._queue, cb=self._on_msg)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        try:
            if sub is not None:
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()
        finally:  # cancelled or not, no request's task outlives the server
            await self.tasks.close()

    async def _on_msg(self, msg: Msg) -> None:
        work = self._handle(msg) if self._triage is None else await self._triage(msg)
        if work is None:
            return
        await self._slots.acquire()
        try:
            self.tasks.spawn(self._serve(msg, work), subject=msg.subject)
        except RuntimeError:  # stopping: no answer, the requester times out
            self._slots.release()
            if asyncio.iscoroutine(work):
                work.close()

    async def _serve(self, msg: Msg, work: Awaitable[bytes | None]) -> None:
        try:
            if self._working is None or not self._working.asked(msg):
                answer = await work
            else:
                async with self._working.told(self._nc, msg.reply):
                    answer = await work
            await self._reply(msg, answer)
        finally:
            self._slots.release()
