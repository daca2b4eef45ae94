"""What the egress proxy read of an instance's secrets, kept between requests until it may have
changed (services/provisioner/egress/secrets_proxy.py).

The proxy looks a connection's secrets up for each request it sends on, so that a deleted secret
goes on no later request, on a connection kept open too (providers/egress/proxy.py). Reading the
store each time would add a round trip to every request; what was read for an instance, host
and port is kept instead, and forgotten:

- when the instance's secrets or repos change: ``secrets.set``/``delete`` (``EnvChanged``) and
  ``repos.add``/``remove`` (``ReposChanged``) are published after the store is written, and
  every provisioner hears them on core NATS (``config.env-changed.*``,
  ``config.repos-changed.*``), so that a read begun after the notice sees the change;
- when the connection to NATS is lost, since a notice may be lost with it: nothing is kept
  while it is down, and nothing kept before a reconnect is used after it;
- after ``FLEET_REVOCATION_ROUND_S``, which bounds a notice lost any other way.

A read that a notice overtook (it may have begun before the change it announces) is used for
its request and not kept.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from base.clock import SYSTEM_CLOCK, Clock
from contracts.bus import subjects
from controlplane.store import StoredSecret

log = structlog.get_logger(__name__)

#: The instance's secrets for a host and port, as the store has them now.
Read = Callable[[str, str, int], Awaitable[list[StoredSecret]]]
#: The most (instance, host, port) reads kept: past it, those too old to use go, then all.
MAX_KEPT = 4096
#: What is announced after a change to what the proxy adds.
CHANGES = (subjects.ConfigKind.ENV_CHANGED, subjects.ConfigKind.REPOS_CHANGED)


@dataclass(frozen=True)
class _Kept:
    secrets: list[StoredSecret]
    #: When the read began (monotonic), and the connection to NATS it was read on.
    read_at: float
    connection: int


class SecretsCache:
    """Async context manager: while inside, it hears the changes announced on ``nc`` and keeps
    what ``read`` gives for up to ``max_age_s``."""

    def __init__(self, read: Read, nc: NATS, max_age_s: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self._read = read
        self._nc = nc
        self._max_age_s = max_age_s
        self._clock = clock
        self._kept: dict[tuple[str, str, int], _Kept] = {}
        self._subs: list[Subscription] = []
        #: Notices heard so far (any instance's).
        self.heard = 0
        #: Reads of the store so far: what a request cost that found nothing kept.
        self.reads = 0

    async def __aenter__(self) -> SecretsCache:
        for kind in CHANGES:
            self._subs.append(await self._nc.subscribe(subjects.event_filter(kind),
                                                       cb=self._on_notice))  # fmt: skip
        # The server has the subscriptions before anything is kept on their word.
        await self._nc.flush()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        subs, self._subs = self._subs, []
        for sub in subs:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        self._kept.clear()

    async def secrets(self, instance_id: str, host: str, port: int) -> list[StoredSecret]:
        """``read``'s answer for ``instance_id``, ``host`` and ``port``: the one kept, or a new
        one if none may be used."""
        key = (instance_id, host, port)
        connection, now = self._connection(), self._clock.monotonic()
        kept = self._kept.get(key)
        if kept is not None and kept.connection == connection and self._fresh(kept, now):
            return kept.secrets
        heard = self.heard
        self.reads += 1
        found = await self._read(instance_id, host, port)
        if connection is not None and heard == self.heard and self._connection() == connection:
            self._keep(key, _Kept(found, now, connection))
        return found

    def forget(self, instance_id: str | None) -> None:
        """Forget what was read for ``instance_id`` (None: for every instance)."""
        self.heard += 1
        for key in [k for k in self._kept if instance_id is None or k[0] == instance_id]:
            del self._kept[key]

    def _connection(self) -> int | None:
        """The connection to NATS notices come on (a number each reconnect changes), or None
        while none may come: not listening yet, or disconnected."""
        if not self._subs or not self._nc.is_connected:
            return None
        return int(self._nc.stats["reconnects"])

    def _fresh(self, kept: _Kept, now: float) -> bool:
        return now - kept.read_at < self._max_age_s

    def _keep(self, key: tuple[str, str, int], kept: _Kept) -> None:
        if len(self._kept) >= MAX_KEPT:
            for old in [k for k, v in self._kept.items() if not self._fresh(v, kept.read_at)]:
                del self._kept[old]
        if len(self._kept) >= MAX_KEPT:
            self._kept.clear()
        self._kept[key] = kept

    async def _on_notice(self, msg: Msg) -> None:
        scope = subjects.config_scope_of(msg.subject)
        # A platform-wide change names no instance: forgetting every one costs a read each.
        self.forget(None if scope == subjects.PLATFORM_SCOPE else scope)
        log.debug("egress.secrets_forgotten", scope=scope)
