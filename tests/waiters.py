"""Waiters: await something observable with a timeout, never sleep and hope."""

from __future__ import annotations

import asyncio
import os
import select
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from contracts.bus.events import AnyEvent, decode_event


class Inbox:
    """Messages on a subject, collected from the moment the subscription starts."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Msg] = asyncio.Queue()

    async def next(self, timeout: float = 10.0) -> Msg:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def next_event(self, timeout: float = 10.0) -> AnyEvent:
        return decode_event((await self.next(timeout)).data)


@asynccontextmanager
async def subscribed(nc: NATS, subject: str) -> AsyncIterator[Inbox]:
    inbox = Inbox()

    async def on_msg(msg: Msg) -> None:
        inbox.queue.put_nowait(msg)

    sub = await nc.subscribe(subject, cb=on_msg)
    await nc.flush()
    try:
        yield inbox
    finally:
        await sub.unsubscribe()


async def before_marker(nc: NATS, subject: str, inbox: Inbox, timeout: float = 10.0) -> list[Msg]:
    """Publish a unique marker on ``subject`` through ``nc`` and return what ``inbox`` (which
    must see ``subject``) received before it. One subscription gets its messages in the order
    the server routed them, so whatever was routed to it before the marker is in this list:
    "nothing arrived" becomes a fact, not the hope that a sleep was long enough."""
    marker = f"marker-{uuid.uuid4().hex}".encode()
    await nc.publish(subject, marker)
    before: list[Msg] = []
    async with asyncio.timeout(timeout):
        while (msg := await inbox.next(timeout)).data != marker:
            before.append(msg)
    return before


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, every: float = 0.05
) -> None:
    """For conditions with no event to await (a log line, a file, a consumer's counters):
    check repeatedly, and fail loudly at the deadline rather than hope a sleep was enough."""
    async with asyncio.timeout(timeout):
        while True:
            ok = condition()
            if not isinstance(ok, bool):
                ok = await ok
            if ok:
                return
            await asyncio.sleep(every)


def still_running_after(pids: list[int], timeout: float) -> list[int]:
    """Wait (up to ``timeout``) for each process of ``pids`` to end, children or not, on their
    pidfds (readable once a process has ended); those still running at the deadline."""
    fds: dict[int, int] = {}
    for pid in pids:
        with suppress(ProcessLookupError):  # ended already
            fds[os.pidfd_open(pid)] = pid
    deadline = time.monotonic() + timeout
    try:
        while fds and (left := deadline - time.monotonic()) > 0:
            for fd in select.select(list(fds), [], [], left)[0]:
                del fds[fd]
                os.close(fd)
        return sorted(fds.values())
    finally:
        for fd in fds:
            os.close(fd)
