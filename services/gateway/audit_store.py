"""Storing a batch of messages on a JetStream stream, pipelined: each is published with its own
reply subject under one inbox this connection subscribes to once, and the stream's acks come
back there. What is not acknowledged in time (no answer, JetStream unavailable) is published
again with the same ``Nats-Msg-Id`` (the stream drops a copy it already has), up to a bound.

A plain request per message costs several times the CPU (a future, a timer and a reply mux per
call): measured 236 µs against 32 µs per message on the reference host.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from core.backoff import backoff_s

log = structlog.get_logger(__name__)

#: Tries of one message, and how long each waits for the stream's ack.
ATTEMPTS = 6
ACK_WAIT_S = 5.0


class _Ack(msgspec.Struct):
    error: dict[str, object] | None = None


_ACK = msgspec.json.Decoder(_Ack)


@dataclass(frozen=True)
class Message:
    id: str
    subject: str
    data: bytes


class StoredBatches:
    """Async context manager: one subscription for the acks of every batch; ``store`` one
    batch at a time."""

    def __init__(self, nc: NATS) -> None:
        self._nc = nc
        self._prefix = nc.new_inbox()
        self._sub: Subscription | None = None
        self._waiting: set[str] = set()
        self._refused: dict[str, str] = {}
        self._all_acked = asyncio.Event()

    async def __aenter__(self) -> StoredBatches:
        self._sub = await self._nc.subscribe(f"{self._prefix}.*", cb=self._on_ack)
        return self

    async def __aexit__(self, *exc: object) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def _on_ack(self, msg: Msg) -> None:
        msg_id = msg.subject.rsplit(".", 1)[-1]
        if msg_id not in self._waiting:
            return  # a late ack of an earlier try: that message was settled already
        if not msg.data:  # a status (no responders, a 503): not stored, tried again
            return
        try:
            ack = _ACK.decode(msg.data)
        except msgspec.DecodeError:
            return
        if ack.error is not None and ack.error.get("code") == 503:
            return  # JetStream unavailable for now
        if ack.error is not None:
            self._refused[msg_id] = str(ack.error.get("description", ack.error))
        self._waiting.discard(msg_id)
        if not self._waiting:
            self._all_acked.set()

    async def store(self, batch: list[Message]) -> Mapping[str, str]:
        """Store every message of ``batch``; the ones that were not stored, and why."""
        pending = {m.id: m for m in batch}
        failed: dict[str, str] = {}
        for attempt in range(1, ATTEMPTS + 1):
            self._waiting, self._refused = set(pending), {}
            self._all_acked.clear()
            for m in pending.values():
                await self._nc.publish(m.subject, m.data, reply=f"{self._prefix}.{m.id}",
                                       headers={"Nats-Msg-Id": m.id})  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_acked.wait(), ACK_WAIT_S)
            for msg_id in set(pending) - self._waiting:
                del pending[msg_id]
            failed |= self._refused
            if not pending or attempt == ATTEMPTS:
                break
            log.warning("audit.store_retry", unacknowledged=len(pending), attempt=attempt)
            await asyncio.sleep(backoff_s(attempt, base=0.25, cap=5.0))
        failed |= {msg_id: "no acknowledgement from the stream" for msg_id in pending}
        self._waiting = set()
        return failed
