"""``FleetClient.call``: one request, sent again while the gateway answers ``Unavailable``
(its store or bus is failing over), with the one backoff rule, a bounded number of times
(``base.retry.Retries``, as every retry loop of fleetd).

``FleetClient`` binds ``call`` as its method, and provides ``_call_once``, the plain request
(through its transport, which raises ``ConnectionFailed``: kept importable from here).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from base.retry import Backoff, Retries
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
#: The one backoff rule's waits (``base.retry``) between a call's tries, and between a cut
#: stream's resumes.
_UNAVAILABLE = Backoff(base=0.25, cap=5.0)
_CUT = Backoff(base=0.1, cap=2.0)


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
    waits = Retries(_UNAVAILABLE, tries=self.unavailable_tries)
    while True:
        try:
            return await self._call_once(spec, params, timeout_s=timeout_s)
        except Unavailable as exc:
            wait = waits.next_wait_s()
            if wait is None:
                raise
            wait = max(exc.retry_after_ms / 1000, wait)
            log.info("client.retry_unavailable", method=spec.name, attempt=waits.failed,
                     wait_s=wait)  # fmt: skip
        except ConnectionFailed as exc:
            wait = waits.next_wait_s() if resend_cut and exc.sent else None
            if wait is None:
                raise
            log.info("client.retry_cut", method=spec.name, attempt=waits.failed, wait_s=wait)
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
        self.reset()

    def reset(self) -> None:
        self._cuts = Retries(_CUT, tries=STREAM_CUTS + 1)
        self._unavailables = Retries(_UNAVAILABLE, tries=self.client.unavailable_tries)

    async def cut(self) -> None:
        wait = self._cuts.next_wait_s()
        if wait is None:
            raise FleetError(f"GET /events was cut {self._cuts.failed} times in a row") from None
        await asyncio.sleep(wait)

    async def unavailable(self, exc: Unavailable) -> None:
        wait = self._unavailables.next_wait_s()
        if wait is None:
            raise exc
        self.client.unavailable_retries += 1
        wait = max(exc.retry_after_ms / 1000, wait)
        log.info("client.events_resume_unavailable", attempt=self._unavailables.failed,
                 wait_s=wait)  # fmt: skip
        await asyncio.sleep(wait)
