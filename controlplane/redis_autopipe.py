"""Auto-pipelining: the commands a process issues in one turn of its event loop go to Redis
as one pipeline.

A stage handles dozens of events at once, each making a Redis call or two; sent one by one,
every call paid redis-py's whole per-command path (a pooled connection, a write, a read, its
retry and observability wrappers): about 100 µs of CPU each, measured, against about 25 µs as
part of a pipeline of 32: sent one by one, they are the largest share of a stage's CPU in
benchmark 3.
Here ``execute_command`` queues the command and, at the end of the current loop turn, every
queued command goes out in one non-transactional pipeline; each caller gets its own reply or
its own error, as if it had sent the command alone.

What does not change: each command is still atomic on its own (a Lua script runs whole), a
caller's commands keep their order (it awaits each before sending the next), transactions
(``pipeline(transaction=True)``) and explicit pipelines are untouched, and a connection error
retries the batch through the pool's ``Retry`` (as one command's would: a command that was
applied before the connection broke may be applied again, the same as before).
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from base.tasks import OwnedTasks

#: Commands per pipeline; a larger turn's queue is split, each part on its own connection.
MAX_BATCH = 128

_Queued = tuple[tuple[Any, ...], dict[str, Any], "asyncio.Future[Any]"]


class AutoPipelineRedis(aioredis.Redis):
    """``redis.asyncio.Redis`` whose single commands are batched per event-loop turn."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queue: list[_Queued] = []
        # Joined at the close, however long the batches take: each caller waits for its reply.
        self._flushing = OwnedTasks("redis-autopipe", drain_s=None,
                                    failed_event="redis.autopipe_failed")  # fmt: skip
        self._closed = False

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Send what is queued and wait for what is being sent, then close. A batch sent after
        the pool's close would open a connection that nobody closes (a ResourceWarning in some
        later test); a command after the close is refused for the same reason."""
        self._closed = True  # nothing is queued from here on: one flush sends the rest
        self._flush()
        await self._flushing.close()
        await super().aclose(close_connection_pool)

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        if self._closed:
            raise redis.exceptions.ConnectionError("the Redis client is closed")
        if self.single_connection_client:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.append((args, options, fut))
        if len(self._queue) == 1:  # the first of this turn: flush once every task had its go
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        queue, self._queue = self._queue, []
        for i in range(0, len(queue), MAX_BATCH):
            self._flushing.spawn(self._send(queue[i : i + MAX_BATCH]), name="redis-autopipe")

    async def _send(self, batch: list[_Queued]) -> None:
        if len(batch) == 1:  # alone in its turn: a pipeline would only add its own cost
            args, options, fut = batch[0]
            try:
                reply = await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
            except asyncio.CancelledError:
                _settle(fut, _cut())
                raise
            except Exception as exc:  # noqa: BLE001 - task boundary: the caller gets it
                _settle(fut, exc)
            else:
                _settle(fut, reply)
            return
        try:
            async with self.pipeline(transaction=False) as pipe:
                for args, options, _ in batch:
                    pipe.execute_command(*args, **options)
                replies = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:
            for *_, fut in batch:
                _settle(fut, _cut())
            raise
        except Exception as exc:  # noqa: BLE001 - task boundary: each caller gets the failure it would have had alone
            for *_, fut in batch:
                _settle(fut, exc)
            return
        for (*_, fut), reply in zip(batch, replies, strict=True):
            _settle(fut, reply)


def _cut() -> redis.exceptions.ConnectionError:
    """What a caller gets when the task sending its command is cancelled under it: the callers
    were not cancelled (a cancelled future would end each as if it had been, and a web handler
    cancelled so drops its connection unanswered), their command's fate is unknown."""
    return redis.exceptions.ConnectionError("the command's pipeline was cancelled")


def _settle(fut: asyncio.Future[Any], reply: Any) -> None:
    if fut.done():  # its caller was cancelled: the command ran, nobody waits
        return
    if isinstance(reply, Exception):
        fut.set_exception(reply)
    else:
        fut.set_result(reply)
