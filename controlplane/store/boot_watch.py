"""The boot watchdog's window of each booting machine (``store.boot_watch``): the time its daemon
has to report ready runs only while the platform watches it (services/prober/boot_watch.py).

One hash per watched machine, shared by every prober replica (any of them may hold the event at
a look): when its window began and why, when it was last looked at, which daemon (external id)
it was started as, and since when its host has kept saying its daemon runs. It expires by itself
a while after the last look, so a machine no one watches any more leaves nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, cast

import msgspec

from controlplane.store import scripts as store_scripts

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from controlplane.store.keys import Keys

#: What began a window: the machine's ``machine.provisioned``; its daemon started anew (another
#: external id); the platform back after it was not watching for longer than the gap; its host
#: saying its daemon runs when the window before ran out.
WindowStart = Literal["provisioned", "daemon", "platform", "alive"]


class BootWindow(msgspec.Struct, frozen=True, kw_only=True):
    #: When the window began (epoch seconds).
    since: float
    why: WindowStart
    #: When the first window its host's word gave it began (None: no such window yet).
    alive_from: float | None = None


class BootWatchRecords:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._look = store_scripts.BoundScript(store_scripts.BOOT_LOOK)
        self._alive = store_scripts.BoundScript(store_scripts.BOOT_ALIVE)

    async def look(
        self, machine_id: str, *, now: float, start: float, daemon: str, gap_s: float,
        ttl_s: float, holds: bool = False,
    ) -> BootWindow | None:  # fmt: skip
        """A look at the booting machine at ``now``: its window, begun anew if its daemon is
        not the one of the last look or if the last look (the first: ``start``) is more than
        ``gap_s`` old. ``holds``: the machine is setting up, and its window holds (the time
        since the last look is not booting time); None when it has no window yet. The record
        lives ``ttl_s`` past this look."""
        script = self._look.on(self._redis)
        since, why, alive = cast(list[str], await script(
            keys=[self._keys.k_boot_watch(machine_id)],
            args=[repr(now), repr(start), daemon, repr(gap_s), int(ttl_s * 1000),
                  "1" if holds else "0"],
        ))  # fmt: skip
        if not since:
            return None
        return BootWindow(since=float(since), why=cast(WindowStart, why),
                          alive_from=float(alive) if alive else None)  # fmt: skip

    async def alive(self, machine_id: str, now: float) -> float | None:
        """A new window from ``now``, given by its host's word that its daemon runs; when the
        first such window began (None: no record, nothing renewed)."""
        script = self._alive.on(self._redis)
        first = await script(keys=[self._keys.k_boot_watch(machine_id)], args=[repr(now)])
        return float(first) if first else None

    async def forget(self, machine_id: str) -> None:
        """The machine is set up (or stopped, failed, archived): nothing left to watch."""
        await self._redis.delete(self._keys.k_boot_watch(machine_id))
