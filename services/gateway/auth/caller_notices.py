"""Gateway replicas tell each other of a change to callers, so that it takes effect on every
replica at once: a user disabled through one replica is refused by the next call to any other,
and what they hold open there is cut by the revocation round the notice sets off.

A write through this process's Store that changes a caller (``Store.caller_changes``) is
announced, once written, by a notice on ``subjects.CALLERS_CHANGED`` (core NATS), flushed to the
server before the call that wrote it is answered. Each replica that hears one from another
replica forgets the callers it keeps (``caller_cache``) and wakes its revocation round
(``revocation``).

A notice is at-most-once: one lost (the server unreachable, a replica reconnecting) leaves the
others with what they keep for at most ``FLEET_REVOCATION_ROUND_S``, the bound there was
before, so a failed notice is logged and never fails the write.

The notices go over the gateway's audit-account connection (``AuditLog.nc``): with the NATS
accounts fleetd configures (``fleet.up.embedded.NatsAuth``), that account's one user is the
gateway's, so no machine and no other service can send a notice or read one.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from types import TracebackType

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from contracts.bus import subjects
from contracts.people import CallersChanged
from controlplane.security.caller_changes import CallerChanges

log = structlog.get_logger(__name__)

#: How long a write waits for its notice to reach the server: past the revocation round the
#: other replicas have forgotten their callers anyway.
NOTICE_WAIT_S = 0.5
_DECODE = msgspec.json.Decoder(CallersChanged)


class CallerNotices:
    """Async context manager: while inside, changes written here are announced and changes
    announced by other replicas are heard."""

    def __init__(self, nc: NATS, changes: CallerChanges) -> None:
        self._nc = nc
        self._changes = changes
        #: This process among the replicas: its own notices come back to it, and are skipped.
        self.replica = uuid.uuid4().hex
        self._notice = msgspec.json.encode(CallersChanged(replica=self.replica))
        self._sub: Subscription | None = None
        self._announcing = contextlib.ExitStack()
        #: Notices from other replicas heard so far.
        self.heard = 0

    async def __aenter__(self) -> CallerNotices:
        self._sub = await self._nc.subscribe(subjects.CALLERS_CHANGED, cb=self._on_notice)
        self._announcing.enter_context(self._changes.announcing(self.announce))
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._announcing.close()
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def announce(self) -> None:
        """Tell the other replicas; never raises (a lost notice is bounded by the round)."""
        if not self._nc.is_connected:
            log.warning("gateway.callers_notice_lost", reason="nats is not connected")
            return
        try:
            async with asyncio.timeout(NOTICE_WAIT_S):
                await self._nc.publish(subjects.CALLERS_CHANGED, self._notice)
                await self._nc.flush()
        except (nats.errors.Error, TimeoutError, OSError) as exc:
            log.warning("gateway.callers_notice_lost", reason=repr(exc))

    async def _on_notice(self, msg: Msg) -> None:
        if _replica_of(msg.data) != self.replica:  # one not understood is heard all the same
            self.heard += 1
            self._changes.heard()


def _replica_of(data: bytes) -> str | None:
    try:
        return _DECODE.decode(data).replica
    except msgspec.DecodeError:
        log.warning("gateway.callers_notice_malformed", size=len(data))
        return None
