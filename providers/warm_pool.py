"""The warm pool of one provider: machines started ahead of demand, each used once.

A pooled machine runs its daemon, imports done, but has no identity: no machine id, no
token, no instance, no NATS connection (``daemon/supervision/pool.py``). ``take()`` hands one out
(the
provisioner then gives it its identity, see ``services/provisioner/claims.py``); it never
comes back. The keeper task refills the pool after each take, replaces a pooled machine that
died, and shrinks the pool while the host's available memory is below the threshold. Each
provisioner process has its own pool; an empty pool is not an error (the caller starts a
machine cold).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from types import TracebackType
from typing import Protocol

import structlog

from base import procinfo
from base.backoff import backoff_s
from base.clock import SYSTEM_CLOCK, Clock, within
from base.tasks import OwnedTasks
from base.ticker import Ticker
from providers.host_memory import mem_available_mb


def owner_name(pid: int) -> str:
    """This pool's directory name (a local or gvisor pool's; a docker pooled container made
    before the lifeline was marked so too): the process (pid and start time: a reused pid is not
    it) and a random part (two pools in one process, as in tests, never share a directory)."""
    return f"{pid}-{procinfo.start_ticks(pid)}-{secrets.token_hex(4)}"


def owner_alive(name: str) -> bool:
    """Whether the pool named ``name`` (``owner_name``) still runs: what a gone one left is
    removed by the next."""
    pid, ticks, *_ = [*name.split("-"), "", ""]
    with contextlib.suppress(ValueError):
        return procinfo.is_alive(int(pid), int(ticks))
    return False


log = structlog.get_logger(__name__)

#: How long a pooled machine may take to say ``up`` before it is stopped and replaced.
UP_TIMEOUT_S = 60.0
#: After a take, the refill waits this long: starting a machine is a burst of CPU (an
#: interpreter and its imports) that would otherwise compete with the claimed machine's own
#: connect and setup, which someone is waiting for (benchmark 11 on 2 cores).
REFILL_DELAY_S = 0.5
#: How often a running pool removes other provisioners' leftovers again (``remove_orphans``),
#: besides at its start: a dead provisioner's exited containers would otherwise wait for the
#: next provisioner start, however far off.
ORPHAN_SWEEP_S = 600.0


class PoolMachine(Protocol):
    slot: str

    @property
    def alive(self) -> bool: ...

    async def wait_up(self) -> None:
        """Return once the machine's daemon waits for its identity; raise if it died first."""

    async def claim(self, machine_id: str, *, home_kept: bool = False) -> str:
        """Make it ``machine_id``'s (its home, its records; no secret yet); its external id.
        With ``home_kept``, the home is the one the machine has already (a stopped machine's,
        a fork's copy), given to the pooled machine (only where the backend ``adopts_homes``)."""

    async def hand_over(self, token: str) -> None:
        """Give the claimed machine its identity; it then connects and reports ready."""

    async def stop(self) -> None:
        """Stop it for good (idempotent)."""


class PoolBackend(Protocol):
    name: str
    #: Whether its machines can be given a home they were not started with (``home_kept``).
    adopts_homes: bool

    async def spawn(self, on_death: Callable[[], None]) -> PoolMachine:
        """Start one pooled machine; ``on_death`` is called if it ends while pooled."""

    async def remove_orphans(self) -> int:
        """Stop and remove the pooled machines of provisioners that are gone; how many."""

    async def close(self) -> None:
        """Stop whatever of the pool is still running (this process's)."""


class WarmPool:
    """Async context manager: the keeper runs inside the block; on exit every pooled machine
    is stopped (none leaks); on entry the orphans of an earlier run are removed. Its rules
    (the keeper's rounds, the refill delay, the sweeps, a start's time limit and backoff) are
    ``clock``'s time."""

    def __init__(
        self,
        backend: PoolBackend,
        size: int,
        *,
        min_available_mb: float,
        memory: Callable[[], float | None] = mem_available_mb,
        check_s: float = 1.0,
        refill_delay_s: float = REFILL_DELAY_S,
        sweep_s: float = ORPHAN_SWEEP_S,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.backend = backend
        self.clock = clock
        self.size = size
        self.min_available_mb = min_available_mb
        self._memory = memory
        self._refill_delay_s = refill_delay_s
        self._hold_until = 0.0
        self._sweep_s = sweep_s
        self._next_sweep = 0.0
        self.ready: list[PoolMachine] = []
        self._starting = 0
        self._failures = 0
        self._changed = asyncio.Condition()
        # The keeper: at once, then every check_s, at once when woken; after a take, not
        # before the refill delay is over.
        self._keeper = Ticker(lambda: self._held_s() or check_s, clock, tick=self._tend,
                              name=f"pool:{backend.name}", failed_event="pool.tend_failed",
                              at_once=True)  # fmt: skip
        self._wake = self._keeper.wake
        #: Starts and removals in flight (cancelled on exit; what they leave, the backend's
        #: close removes).
        self._tasks = OwnedTasks(f"pool:{backend.name}", failed_event="pool.stop_failed")

    async def __aenter__(self) -> WarmPool:
        await self._sweep()
        await self._keeper.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._keeper.__aexit__(None, None, None)
        await self._tasks.close()
        machines, self.ready = self.ready, []
        await asyncio.gather(*(m.stop() for m in machines), return_exceptions=True)
        await self.backend.close()

    def take(self, *, home_kept: bool = False) -> PoolMachine | None:
        """A live pooled machine, now the caller's alone; None if the pool is empty, or if
        the machine has a home already (``home_kept``) and this pool's cannot be given one."""
        if home_kept and not self.backend.adopts_homes:
            return None
        while self.ready:
            machine = self.ready.pop(0)
            if machine.alive:
                self._hold_until = self.clock.monotonic() + self._refill_delay_s
                self._wake()
                log.info("pool.taken", provider=self.backend.name, slot=machine.slot)
                return machine
        self._wake()
        return None

    async def wait_filled(self, count: int | None = None) -> None:
        """Until ``count`` (default: the pool's size) machines are ready (tests, bench)."""
        want = self.size if count is None else count
        async with self._changed:
            await self._changed.wait_for(lambda: self._live() >= want)

    def _live(self) -> int:
        return sum(1 for m in self.ready if m.alive)

    def _memory_low(self) -> bool:
        available = self._memory()
        return available is not None and available < self.min_available_mb

    def _held_s(self) -> float:
        return max(0.0, self._hold_until - self.clock.monotonic())

    async def _sweep(self) -> None:
        self._next_sweep = self.clock.monotonic() + self._sweep_s
        removed = await self.backend.remove_orphans()
        if removed:
            log.info("pool.orphans_removed", provider=self.backend.name, count=removed)

    async def _tend(self) -> None:
        if self.clock.monotonic() >= self._next_sweep:
            await self._sweep()
        for m in [m for m in self.ready if not m.alive]:
            self.ready.remove(m)
            log.warning("pool.machine_died", provider=self.backend.name, slot=m.slot)
            # In the background: a docker one may take seconds (it ends itself first, or the
            # engine does not answer); its replacement starts meanwhile.
            self._tasks.spawn(m.stop(), slot=m.slot)
        if self._memory_low():
            if self.ready:  # one per round: the pool shrinks while memory stays short
                victim = self.ready.pop()
                log.warning("pool.shrunk", provider=self.backend.name, slot=victim.slot,
                            ready=len(self.ready))  # fmt: skip
                await victim.stop()
            return
        if self.clock.monotonic() < self._hold_until:
            return  # a machine was just claimed: let it start first
        while self._live() + self._starting < self.size and self._failures_allow():
            self._starting += 1
            self._tasks.spawn(self._start_one())
        await self._notify()

    def _failures_allow(self) -> bool:
        # Starting keeps failing (bwrap gone, disk full): at most one attempt in flight.
        return self._failures == 0 or self._starting == 0

    async def _start_one(self) -> None:
        machine: PoolMachine | None = None
        try:
            machine = await self.backend.spawn(self._wake)
            await within(self.clock, UP_TIMEOUT_S, machine.wait_up())
        except Exception as exc:  # noqa: BLE001 - task boundary: logged, the keeper retries
            self._failures += 1
            log.warning("pool.start_failed", provider=self.backend.name, error=str(exc),
                        failures=self._failures)  # fmt: skip
            if machine is not None:
                await machine.stop()
            await self.clock.sleep(backoff_s(self._failures, base=0.5, cap=30.0))
        else:
            self._failures = 0
            self.ready.append(machine)
            log.info("pool.machine_ready", provider=self.backend.name, slot=machine.slot)
        finally:
            self._starting -= 1
            self._wake()
        await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
