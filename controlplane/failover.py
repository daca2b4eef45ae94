"""What a failover looks like from inside a handler, and the error a caller gets for it.

While the valkey primary is gone (until the sentinels promote a replica), a NATS node is gone
(until the client reconnects to another) or JetStream elects a new leader, the store and the
bus raise the exceptions below, after their own retries. Nothing is wrong with the request:
the caller is told ``Unavailable`` (retryable, with a wait) instead of "internal error".
"""

from __future__ import annotations

import math

import nats.errors
import nats.js.errors
import redis.exceptions

from base.natsconn import StreamUnavailable
from contracts.errors import FleetError, Unavailable

#: How long a caller should wait before trying again: about one sentinel failover step (the
#: primary is called down after 2 s of silence) or one NATS reconnect wait.
RETRY_AFTER_MS = 1000

#: The one table of exceptions that mean "the store or the bus is failing over".
#: redis-py: ConnectionError covers MasterNotFoundError (no primary named by the sentinels yet),
#: BusyLoadingError and "No connection available." from a blocking pool; ReadOnlyError is a
#: command that reached a replica (the old primary demoted). nats-py: no connection to any node
#: answers (timeout), nobody subscribes yet (no responders), JetStream answers 503.
TRANSIENT: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
    StreamUnavailable,
)


def unavailable(exc: Exception) -> FleetError | None:
    """``Unavailable`` for an exception of the failover table, else None (a bug: -32603)."""
    return as_unavailable(exc) if isinstance(exc, TRANSIENT) else None


def as_unavailable(exc: Exception) -> Unavailable:
    """The ``Unavailable`` a caller gets for ``exc`` (one of ``TRANSIENT``)."""
    return Unavailable(
        f"service temporarily unavailable ({_what(exc)}), retry", retry_after_ms=RETRY_AFTER_MS
    )


def retry_after_s(exc: Unavailable) -> int:
    """The ``Retry-After`` header's whole seconds (at least 1)."""
    return max(1, math.ceil(exc.retry_after_ms / 1000))


def _what(exc: Exception) -> str:
    """Which side is failing over, without the exception's text (it may name hosts)."""
    if isinstance(exc, redis.exceptions.RedisError):
        return "state store"
    return "event bus"
