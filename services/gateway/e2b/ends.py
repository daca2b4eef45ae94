"""A sandbox's timeout carried out: each second, the sandboxes whose end has come are killed
(``machines.archive``) or, created with ``autoPause`` (``lifecycle.on_timeout: pause``), paused
with their memory (``machines.pause``). Every gateway replica looks; whichever takes an end
from the store (``store.e2b.take_due``) carries it out, once. The platform acts here, not a
caller: its audit entries name ``e2b-timeout``."""

from __future__ import annotations

import structlog

from base.clock import SYSTEM_CLOCK, Clock
from base.ticker import Ticker
from contracts.errors import FleetError
from contracts.gateway_rpc import MACHINES_ARCHIVE
from contracts.gateway_types import MachineRef
from controlplane.store import Store
from services.gateway.auth import Caller
from services.gateway.e2b.calls import Calls
from services.gateway.e2b.sandboxes import pause_of

log = structlog.get_logger(__name__)

#: Who carries a timeout out (the platform itself).
TIMEOUT_CALLER = Caller(token_id="e2b-timeout", admin=True)  # noqa: S106 - a caller id
ROUND_S = 1.0


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
        pause = record is not None and record.on_timeout == "pause"
        ref = MachineRef(machine_id=sandbox_id)
        try:
            if pause:
                machine = await self._store.get_machine(sandbox_id)
                await self._calls(pause_of(machine), ref, TIMEOUT_CALLER)
            else:
                await self._calls(MACHINES_ARCHIVE, ref, TIMEOUT_CALLER)
        except FleetError as exc:  # paused or archived already, or gone: its end stands
            log.info("e2b.end_refused", machine_id=sandbox_id, error=exc.message)
        if not pause:
            await self._store.e2b.forget(sandbox_id)
        log.info("e2b.sandbox_ended", machine_id=sandbox_id, action="pause" if pause else "kill")
