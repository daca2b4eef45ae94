"""The one way fleetd connects to NATS, and the one way it stores a message with retries
(``publish_stored``).

Both the platform's services and the daemon on a machine use these, so a connection
reconnects the same way everywhere and a stored publish retries the same way everywhere.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import nats
import nats.errors
import structlog
from nats.aio.client import DEFAULT_FLUSH_TIMEOUT, Client as NATS

from base.retry import Backoff, retry

log = structlog.get_logger(__name__)

ErrorCallback = Callable[[Exception], Awaitable[None]]


class PublishRejected(Exception):
    """The stream answered a stored publish with an error (not a transient one)."""


class StreamUnavailable(Exception):
    """JetStream kept answering "unavailable" (503: no leader, an election) to every try."""


#: What a stored publish tries again: no answer, nobody listening yet (an election), and the
#: connection itself between two nodes (reconnecting, stale, its buffer full meanwhile).
TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
)


#: A stored publish's waits between tries: by count, and within a budget (``budget_s``).
_RETRY = Backoff(base=0.25, cap=5.0)
_RETRY_IN_BUDGET = Backoff(base=0.25, cap=1.0)


class _PubAck(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: dict[str, Any] | None = None


def server_urls(csv: str) -> list[str]:
    """``nats://a:4222, nats://b:4222`` -> the list nats-py wants (a cluster's nodes)."""
    return [url.strip() for url in csv.split(",") if url.strip()]


async def _log_error(exc: Exception) -> None:
    log.warning("nats.error", error=str(exc))


async def _log_disconnect() -> None:
    log.warning("nats.disconnected")


async def _log_reconnect() -> None:
    log.info("nats.reconnected")


class Client(NATS):
    """nats-py's client whose ``flush`` holds what it promises: once it returns, the server has
    every command written before it. nats-py writes its PING straight to the socket while a
    subscription or a publish waits in the pending buffer for the client's flusher task, so
    its PONG can come back before the server has seen them: a request from another connection
    right after ``subscribe`` and ``flush`` found no responders 33 times in 1,000 on a loaded
    host (none with this client). Every "my interest is known now" in fleetd leans on it."""

    async def flush(self, timeout: int = DEFAULT_FLUSH_TIMEOUT) -> None:
        flusher, queue = self._flusher_task, self._flush_queue
        if self.is_connected and flusher is not None and not flusher.done() and queue is not None:
            # The flusher resolves each future it takes once it has written what was pending.
            written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            await queue.put(written)
            try:
                await asyncio.wait_for(written, timeout)
            except TimeoutError:
                raise nats.errors.FlushTimeoutError from None
        await super().flush(timeout)


async def connect(
    urls: str,
    *,
    name: str,
    user: str = "",
    password: str = "",
    wait_s: tuple[float, float] = (0.25, 1.0),
    error_cb: ErrorCallback | None = None,
    **extra: Any,
) -> NATS:
    """A NATS connection that, once up, reconnects forever. ``wait_s`` bounds the random wait
    between reconnect attempts: nats-py has no jitter knob, and a wait drawn per process keeps
    a fleet of clients from reconnecting in lockstep after a server restart."""
    creds: dict[str, Any] = {"user": user, "password": password} if user else {}
    options: dict[str, Any] = {
        "name": name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": random.uniform(*wait_s),
        "error_cb": error_cb or _log_error,
        "disconnected_cb": _log_disconnect,
        "reconnected_cb": _log_reconnect,
    }
    nc = Client()
    await nc.connect(server_urls(urls), **options, **creds, **extra)
    return nc


async def publish_stored(
    nc: NATS,
    subject: str,
    payload: bytes,
    *,
    msg_id: str,
    attempts: int = 8,
    timeout_s: float = 5.0,
    budget_s: float | None = None,
) -> None:
    """Publish to a JetStream stream's subject and wait for the stream's ack, retrying what is
    transient (no answer, no responders, JetStream unavailable) with backoff; ``attempts=0``
    retries until it is stored. ``msg_id`` (``Nats-Msg-Id``) lets the stream drop a retry
    whose first try was stored after all.

    A plain request rather than nats-py's JetStream context: a machine's daemon may publish
    its own events but holds no JetStream API permission, and both sides must retry alike.
    ``budget_s`` bounds the whole (tries and waits) instead of ``attempts``, for a caller
    someone waits on: it rides out a node's loss (the reconnect to another node, a stream
    leader's election) up to that deadline, where 8 tries of 5 s and their backoff would take
    about a minute with the server gone.
    """
    headers = {"Nats-Msg-Id": msg_id}
    give_up_at = None if budget_s is None else time.monotonic() + budget_s

    async def once() -> None:
        wait_s = timeout_s if give_up_at is None else _left(give_up_at, timeout_s)
        reply = await nc.request(subject, payload, timeout=wait_s, headers=headers)
        try:
            ack = msgspec.json.decode(reply.data, type=_PubAck)
        except msgspec.DecodeError as exc:
            raise PublishRejected(f"{subject}: the stream's ack is not JSON: {exc}") from None
        if ack.error is None:
            return
        if not _not_yet(ack.error):
            raise PublishRejected(f"{subject}: {ack.error.get('description', ack.error)}")
        raise StreamUnavailable("JetStream temporarily unavailable")

    def retrying(tried: int, _wait_s: float, failure: BaseException | None) -> None:
        log.warning("nats.publish_retry", subject=subject, attempt=tried, error=repr(failure))

    # A deadline, not a count: short waits, so the retry after an election is prompt.
    await retry(once, on=(*TRANSIENT, StreamUnavailable), on_retry=retrying,
                backoff=_RETRY if budget_s is None else _RETRY_IN_BUDGET,
                tries=attempts if budget_s is None else 0, budget_s=budget_s)  # fmt: skip


def _not_yet(error: dict[str, Any]) -> bool:
    """Not a refusal, a reason to try again: JetStream unavailable (503), or the stream still
    storing an earlier try with this Nats-Msg-Id (a leader without its quorum yet; once it is
    stored, the next try is answered a duplicate)."""
    return error.get("code") == 503 or "duplicate message id is in process" in str(
        error.get("description", "")
    )


def _left(give_up_at: float, cap_s: float) -> float:
    """A try's timeout within a budget: what is left of it, at most ``cap_s``."""
    return max(0.1, min(cap_s, give_up_at - time.monotonic()))
