"""The event bus: a NATS connection, JetStream, and the machine-event stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DiscardPolicy, StorageType, StreamConfig

from base import natsconn
from base.retry import Backoff, retry
from contracts.bus import subjects
from contracts.bus.events import AnyEvent, encode_event, subject_of
from controlplane.failover import TRANSIENT
from controlplane.settings import Settings

log = structlog.get_logger(__name__)
T = TypeVar("T")

#: How long JetStream remembers a Nats-Msg-Id to drop a duplicate publish.
DUPLICATE_WINDOW_S = 120.0
_PUBLISH_ATTEMPTS = 8


def stream_config(settings: Settings) -> StreamConfig:
    s = settings
    return StreamConfig(
        name=subjects.STREAM_NAME,
        subjects=list(subjects.STREAM_SUBJECTS),
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_S,
        num_replicas=s.stream_replicas,
        # Limits: a machine may publish on its own status subject, so it could
        # otherwise store any number of events of any size for a month.
        max_age=s.stream_max_age_s,
        max_bytes=s.stream_max_bytes,
        max_msg_size=s.stream_max_msg_size,
        max_msgs_per_subject=s.stream_max_msgs_per_subject,
        discard=DiscardPolicy.OLD,
    )


async def connect_nats(settings: Settings, *, name: str, **extra: Any) -> NATS:
    """A service's NATS connection: its static user, reconnecting forever."""
    return await natsconn.connect(
        settings.nats_url,
        name=name,
        user=settings.nats_user,
        password=settings.nats_password,
        **extra,
    )


class Bus:
    """Async context manager owning one NATS connection; publishes events durably."""

    def __init__(
        self, settings: Settings, *, name: str, publish_budget_s: float | None = None
    ) -> None:
        self._settings = settings
        self._name = name
        #: The most a publish may take, retries included (None: its 8 tries): the gateway's,
        #: whose caller waits for it, answers Unavailable after this rather than a minute.
        self._budget_s = publish_budget_s
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
        await ensure_stream(self._js, self._settings)
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
                # The server is gone (drain refused while reconnecting): closing cannot flush
                # to it either, and a stopping service must not crash on that.
                with contextlib.suppress(OSError):
                    await nc.close()

    async def publish(self, event: AnyEvent) -> None:
        """Store one event in the stream; retried, deduplicated by its event id."""
        subject = subject_of(event)
        await natsconn.publish_stored(
            self.nc, subject, encode_event(event), msg_id=event.event_id,
            attempts=_PUBLISH_ATTEMPTS, budget_s=self._budget_s,
        )  # fmt: skip
        log.debug("bus.published", subject=subject, event_id=event.event_id)

    async def publish_many(self, events: Iterable[AnyEvent]) -> None:
        """Independent events, pipelined rather than awaited one by one."""
        await asyncio.gather(*(self.publish(e) for e in events))


async def ensure_stream(js: JetStreamContext, settings: Settings) -> None:
    await put_stream(js, stream_config(settings))


PullSubscription = JetStreamContext.PullSubscription
#: How long a stream's setup waits out a cluster that does not answer yet, and its waits.
_SETUP_BUDGET_S = 120.0
_SETUP_RETRY = Backoff(base=0.25, cap=2.0)
#: JetStream's code for a stream whose ``max_bytes`` its storage cannot reserve.
_NO_ROOM = 10047
#: JetStream's code for a stream no peers can be placed on. A cluster that has just formed
#: answers it until every peer has sent its first statistics (the meta leader counts a peer
#: it has no figures for as having no storage), so a setup step waits it out like a 503.
_NO_PEERS = 10005
_NO_ROOM_HINT = (
    "JetStream's store (by default 75% of the disk free when nats-server started) cannot "
    "reserve the stream's size: free disk, or lower FLEET_STREAM_MAX_BYTES/FLEET_AUDIT_MAX_BYTES"
)


async def setup_step(step: Callable[[], Awaitable[T]], what: str) -> T:
    """A JetStream setup step (a stream made or brought up to date, a consumer bound) for
    ``what``: what a cluster that is still electing its leaders answers (no answer, 503) is
    tried again within ``_SETUP_BUDGET_S``, since a service that gave up at the first timeout
    crashed at its start."""

    def retrying(tried: int, wait_s: float, failure: BaseException | None) -> None:
        log.warning("bus.setup_retry", what=what, attempt=tried, error=repr(failure))

    return await retry(step, on=TRANSIENT, backoff=_SETUP_RETRY, budget_s=_SETUP_BUDGET_S,
                       on_retry=retrying)  # fmt: skip


async def bind_pull(js: JetStreamContext, config: ConsumerConfig) -> PullSubscription:
    """The durable pull consumer ``config`` names on the event stream, made or brought to
    ``config`` (``pull_subscribe`` alone binds to an existing durable as it is, so a deployment
    that changes the ack wait would keep the old one), and bound. A ``setup_step``."""
    assert config.durable_name is not None
    assert config.filter_subject is not None
    durable, subject = config.durable_name, config.filter_subject

    async def bind() -> PullSubscription:
        await js.add_consumer(subjects.STREAM_NAME, config=config)
        return await js.pull_subscribe(subject, durable=durable, stream=subjects.STREAM_NAME,
                                       config=config)  # fmt: skip

    return await setup_step(bind, f"{subjects.STREAM_NAME}/{durable}")


async def put_stream(js: JetStreamContext, config: StreamConfig) -> None:
    """Create the stream ``config`` names, or bring it to ``config`` where it exists: an
    existing stream is updated, never added again, since the server counts an add of an
    existing stream's ``max_bytes`` on top of what that stream reserves already (10047,
    insufficient storage, on a store with room for it once: every restart of a service then
    failed where free disk was under about twice the streams' sizes). A ``setup_step``."""
    assert config.name is not None
    await setup_step(lambda: _put_stream(js, config), config.name)


async def _put_stream(js: JetStreamContext, config: StreamConfig) -> None:
    assert config.name is not None
    try:
        await js.stream_info(config.name)
    except nats.js.errors.NotFoundError:
        try:
            await js.add_stream(config)
            return
        except nats.js.errors.APIError as exc:
            if not await _exists(js, config.name):
                if exc.err_code == _NO_PEERS:
                    raise PlacementPending(config.name, exc) from exc
                if exc.err_code == _NO_ROOM:
                    log.error("bus.stream_no_room", stream=config.name,
                              max_bytes=config.max_bytes, hint=_NO_ROOM_HINT)  # fmt: skip
                raise
            # Made meanwhile by another process: brought to this configuration below.
    await js.update_stream(config)


class PlacementPending(natsconn.StreamUnavailable):
    """No peer of the cluster can hold the stream yet (10005): tried again within the setup's
    budget; once that is spent, the service stops with the server's reason and the hint."""

    def __init__(self, stream: str, refused: nats.js.errors.APIError) -> None:
        reason = str(refused.description)
        hint = f"; {_NO_ROOM_HINT}" if "storage" in reason else ""
        super().__init__(f"no JetStream peer can place stream {stream} ({reason}){hint}")


async def _exists(js: JetStreamContext, name: str) -> bool:
    try:
        await js.stream_info(name)
    except nats.js.errors.NotFoundError:
        return False
    return True
