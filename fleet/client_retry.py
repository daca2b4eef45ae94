"""``FleetClient.call``: one request, sent again while the gateway answers ``Unavailable``
(its store or bus is failing over), with the one backoff rule, a bounded number of times.

``FleetClient`` binds ``call`` as its method, and provides ``_call_once``, the plain request
(through its transport, which raises ``ConnectionFailed``: kept importable from here).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from base.backoff import backoff_s
from contracts.errors import FleetError, Unavailable
from contracts.jsonrpc import LazyLogger, MethodSpec, P, R
from fleet.transport import ConnectionFailed

if TYPE_CHECKING:  # the client binds ``call``
    from fleet.client import FleetClient

log = LazyLogger(__name__)  # structlog only once it logs: a command's start-up does without

#: Tries of one call while the gateway answers Unavailable: with waits of at least its
#: ``retryAfterMs`` (1 s) doubling from 0.25 s up to 5 s, about 20 s in all, longer than a
#: sentinel failover (2 s to call the primary down, then an election) or a JetStream election.
UNAVAILABLE_TRIES = 8


async def call(
    self: FleetClient,
    spec: MethodSpec[P, R],
    params: P,
    *,
    timeout_s: float | None = None,
    resend_cut: bool = False,
) -> R:
    """Any gateway method through its spec in ``contracts.gateway_rpc``: ``params`` its
    params Struct (sent camelCase), the answer decoded as its result type. Answered
    Unavailable, the call is sent again after a wait (up to ``unavailable_tries`` in all):
    a call the gateway ran partly before its store or bus failed may then run twice.
    ``resend_cut``, for params that make running twice harmless (``machines.create`` and
    ``machines.rebuild`` with an ``idempotencyKey``): also sent again when the connection
    broke after the request went out (the gateway may have run it, and only its answer
    was lost)."""
    tried = 0
    while True:
        tried += 1
        try:
            return await self._call_once(spec, params, timeout_s=timeout_s)
        except Unavailable as exc:
            if tried >= self.unavailable_tries:
                raise
            wait = max(exc.retry_after_ms / 1000, backoff_s(tried, base=0.25, cap=5.0))
            log.info("client.retry_unavailable", method=spec.name, attempt=tried, wait_s=wait)
        except ConnectionFailed as exc:
            if not (resend_cut and exc.sent) or tried >= self.unavailable_tries:
                raise
            wait = backoff_s(tried, base=0.25, cap=5.0)
            log.info("client.retry_cut", method=spec.name, attempt=tried, wait_s=wait)
        self.unavailable_retries += 1
        await asyncio.sleep(wait)


#: How many times in a row GET /events may be cut mid-stream before events() gives up.
STREAM_CUTS = 6


class StreamResumes:
    """When ``FleetClient.events`` resumes a stream that ended early, counted in a row (an
    event read resets them): a cut (~5 s of waits in all before it gives up), or 1501 from a
    gateway whose bus is failing over (``event: error``, or a 503 answer to the reopened
    stream), waited for as ``call`` waits for it."""

    def __init__(self, client: FleetClient) -> None:
        self.client = client
        self.cuts = 0
        self.unavailables = 0

    def reset(self) -> None:
        self.cuts = self.unavailables = 0

    async def cut(self) -> None:
        self.cuts += 1
        if self.cuts > STREAM_CUTS:
            raise FleetError(f"GET /events was cut {self.cuts} times in a row") from None
        await asyncio.sleep(backoff_s(self.cuts, base=0.1, cap=2.0))

    async def unavailable(self, exc: Unavailable) -> None:
        self.unavailables += 1
        if self.unavailables >= self.client.unavailable_tries:
            raise exc
        self.client.unavailable_retries += 1
        wait = max(exc.retry_after_ms / 1000, backoff_s(self.unavailables, base=0.25, cap=5.0))
        log.info("client.events_resume_unavailable", attempt=self.unavailables, wait_s=wait)
        await asyncio.sleep(wait)
