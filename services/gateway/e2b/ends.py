"""A sandbox's timeout carried out: each second, the sandboxes whose end has come are killed
(``machines.archive``) or, created with ``autoPause`` (``lifecycle.on_timeout: pause``), paused
with their memory (``machines.pause``). Every gateway replica looks; whichever takes an end
from the store (``store.e2b.take_due``) carries it out, once. The platform acts here, not a
caller: its audit entries name ``e2b-timeout``."""

from __future__ import annotations

import structlog

from base.clock import SYSTEM_CLOCK, Clock
from base.ticker import Ticker
from contracts.errors import FleetError, NotFound
from contracts.gateway.rpc import MACHINES_ARCHIVE
from contracts.gateway.types import MachineRef
from contracts.status import MachineStatus
from controlplane.store import Store
from services.gateway.auth import Caller
from services.gateway.e2b.calls import Calls
from services.gateway.e2b.sandboxes import ASLEEP, GONE, pause_of

log = structlog.get_logger(__name__)

#: Who carries a timeout out (the platform itself).
TIMEOUT_CALLER = Caller(token_id="e2b-timeout", admin=True)  # noqa: S106 - a caller id
ROUND_S = 1.0
#: How soon a sandbox paused at its end is looked at again, until it is asleep.
LOOK_AGAIN_S = 5.0


class SandboxEnds(Ticker):
    name = "gateway.e2b_ends"
    failed_event = "e2b.ends_failed"

    def __init__(self, store: Store, calls: Calls, clock: Clock = SYSTEM_CLOCK) -> None:
        super().__init__(ROUND_S, clock)
        self._store = store
        self._calls = calls

    async def tick(self) -> list[str]:
        """One round: the sandboxes whose end it carried out."""
        done = []
        for sandbox_id in await self._store.e2b.due(self.clock.now()):
            end = await self._store.e2b.end_of(sandbox_id)
            if end is None or not await self._store.e2b.take_due(sandbox_id, end):
                continue  # another replica took it, or it moved meanwhile
            await self._end(sandbox_id)
            done.append(sandbox_id)
        return done

    async def _end(self, sandbox_id: str) -> None:
        record = await self._store.e2b.get(sandbox_id)
        if record is not None and record.on_timeout == "pause":
            await self._pause(sandbox_id)
            return
        try:
            await self._calls(MACHINES_ARCHIVE, MachineRef(machine_id=sandbox_id), TIMEOUT_CALLER)
        except FleetError as exc:  # archived already, or gone: its end stands
            log.info("e2b.end_refused", machine_id=sandbox_id, error=exc.message)
        await self._store.e2b.forget(sandbox_id)
        log.info("e2b.sandbox_ended", machine_id=sandbox_id, action="kill")

    async def _pause(self, sandbox_id: str) -> None:
        """Pause it, and look again in ``LOOK_AGAIN_S`` until it is asleep: a pause is refused
        after it was asked (a daemon slow to let its connection go under load), the machine
        running on, and a sandbox whose time ran out must not run on for good."""
        try:
            machine = await self._store.get_machine(sandbox_id)
        except NotFound:
            return
        if machine.status in (ASLEEP - {MachineStatus.PAUSING}) | GONE:
            return  # asleep, or gone: a pause still under way may yet be refused
        if machine.status is MachineStatus.READY:
            try:
                await self._calls(pause_of(machine), MachineRef(machine_id=sandbox_id),
                                  TIMEOUT_CALLER)  # fmt: skip
            except FleetError as exc:
                log.info("e2b.end_refused", machine_id=sandbox_id, error=exc.message)
            log.info("e2b.sandbox_ended", machine_id=sandbox_id, action="pause")
        await self._store.e2b.look_again(sandbox_id, self.clock.now() + LOOK_AGAIN_S)
