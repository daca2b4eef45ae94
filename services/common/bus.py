"""The event bus: a NATS connection, JetStream, and the machine-event stream."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig

from contracts import subjects
from contracts.events import Event, encode_event, subject_of
from services.common.settings import Settings

log = structlog.get_logger(__name__)

#: How long JetStream remembers a Nats-Msg-Id to drop a duplicate publish.
DUPLICATE_WINDOW_S = 120.0
_PUBLISH_ATTEMPTS = 8


def stream_config(replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=subjects.STREAM_NAME,
        subjects=list(subjects.STREAM_SUBJECTS),
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_S,
        max_age=30 * 24 * 3600.0,
        num_replicas=replicas,
    )


async def connect_nats(settings: Settings, *, name: str, **extra: Any) -> NATS:
    """A NATS connection that reconnects forever, with per-process jitter on the wait."""
    creds: dict[str, Any] = {}
    if settings.nats_user:
        creds = {"user": settings.nats_user, "password": settings.nats_password}

    async def on_error(exc: Exception) -> None:
        log.warning("nats.error", error=str(exc))

    async def on_disconnect() -> None:
        log.warning("nats.disconnected")

    async def on_reconnect() -> None:
        log.info("nats.reconnected")

    return await nats.connect(
        servers=[url.strip() for url in settings.nats_url.split(",") if url.strip()],
        name=name,
        max_reconnect_attempts=-1,
        # nats-py has no jitter knob; a random wait per process spreads reconnects out.
        reconnect_time_wait=random.uniform(0.25, 1.0),
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        **creds,
        **extra,
    )


class Bus:
    """Async context manager owning one NATS connection; publishes events durably."""

    def __init__(self, settings: Settings, *, name: str) -> None:
        self._settings = settings
        self._name = name
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None

    @property
    def nc(self) -> NATS:
        assert self._nc is not None, "Bus used outside its context"
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        assert self._js is not None, "Bus used outside its context"
        return self._js

    async def __aenter__(self) -> Bus:
        self._nc = await connect_nats(self._settings, name=self._name)
        self._js = self._nc.jetstream()
        await ensure_stream(self._js, self._settings.stream_replicas)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        nc, self._nc = self._nc, None
        if nc is not None and not nc.is_closed:
            try:
                await nc.drain()
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("bus.drain_failed", error=str(exc))
                await nc.close()

    async def publish(self, event: Event) -> None:
        """Store one event in the stream; retried, deduplicated by its event id."""
        payload = encode_event(event)
        subject = subject_of(event)
        headers = {"Nats-Msg-Id": event.event_id}
        for attempt in range(1, _PUBLISH_ATTEMPTS + 1):
            try:
                await self.js.publish(subject, payload, headers=headers, timeout=5)
                log.debug("bus.published", subject=subject, event_id=event.event_id)
                return
            except (
                nats.errors.TimeoutError,
                nats.errors.NoRespondersError,
                nats.js.errors.ServiceUnavailableError,
            ) as exc:
                if attempt == _PUBLISH_ATTEMPTS:
                    raise
                log.warning("bus.publish_retry", subject=subject, attempt=attempt, error=repr(exc))
                await asyncio.sleep(min(0.2 * 2**attempt, 5.0))

    async def publish_many(self, events: Iterable[Event]) -> None:
        """Independent events, pipelined rather than awaited one by one."""
        await asyncio.gather(*(self.publish(e) for e in events))


async def ensure_stream(js: JetStreamContext, replicas: int = 1) -> None:
    config = stream_config(replicas)
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError:
        # The stream exists with another configuration (an older fleetd): bring it up to date.
        await js.update_stream(config)
