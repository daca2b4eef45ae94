"""The daemon's NATS connection, as its machine: connected with the machine's credential
(retrying forever: a machine outlives NATS outages), held through a pause (``Parking``),
what an answer may take of one message, and the connection handed back to be closed."""

from __future__ import annotations

import nats.errors
import structlog
from nats.aio.client import Client as NATS

from base import natsconn
from base.retry import Backoff, retry
from contracts.bus import subjects
from daemon.supervision.park import Parking

log = structlog.get_logger(__name__)

_CONNECT_BACKOFF_CAP_S = 10.0
#: The one rule from 0.25 s, one step on: 0.5 s, 1 s, 2 s, ... up to the cap.
_CONNECT_BACKOFF = Backoff(base=0.5, cap=_CONNECT_BACKOFF_CAP_S)
#: Room left in an answer's NATS message for its headers (the reply MAC).
REPLY_HEADROOM = 256


class Link:
    """``nats_url``, as ``machine_id`` with ``credential``; ``parking``: its reconnect handler
    and error callback."""

    def __init__(self, nats_url: str, machine_id: str, credential: str, parking: Parking) -> None:
        self._url = nats_url
        self._machine_id = machine_id
        self._credential = credential
        self.parking = parking
        self._nc: NATS | None = None

    @property
    def nc(self) -> NATS:
        assert self._nc is not None
        return self._nc

    @property
    def connected(self) -> NATS | None:
        """The connection, None before ``connect`` and after ``release``."""
        return self._nc

    async def connect(self) -> NATS:
        """Connect, retrying forever with jittered backoff."""
        self._nc = await retry(self._connect_once, on=(nats.errors.Error, OSError, TimeoutError),
                               backoff=_CONNECT_BACKOFF, on_retry=_connect_failed)  # fmt: skip
        return self._nc

    async def _connect_once(self) -> NATS:
        wait_s = self.parking.wait_s
        return await natsconn.connect(
            self._url,
            name=f"daemon:{self._machine_id}",
            user=self._machine_id,
            password=self._credential,
            inbox_prefix=subjects.machine_inbox_prefix(self._machine_id),
            wait_s=(wait_s, wait_s),
            connect_timeout=5,
            error_cb=self.parking.on_error,
            reconnect_to_server_handler=self.parking.choose,
        )

    def renew(self, credential: str) -> None:
        """A renewed credential of this machine: the password of the next reconnect."""
        self._credential = credential
        if self._nc is not None:
            self._nc.options["password"] = credential

    def release(self) -> NATS | None:
        """The connection, no longer this link's (its caller closes it); None if none."""
        nc, self._nc = self._nc, None
        return nc

    def room(self) -> int:
        """The bytes an answer may take: one message, less the reply's headers."""
        return self.nc.max_payload - REPLY_HEADROOM

    async def publish_chunk(self, subject: str, data: bytes) -> None:
        await self.nc.publish(subject, data)  # buffered: flushed by the client, never awaited


def _connect_failed(attempt: int, delay: float, exc: BaseException | None) -> None:
    log.warning("daemon.connect_failed", attempt=attempt, retry_in_s=round(delay, 2),
                error=repr(exc))  # fmt: skip
