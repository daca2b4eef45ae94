"""Giving up is an event: the machine goes ``failed`` and ``machine.failed`` says where and why."""

from __future__ import annotations

import structlog

from contracts.bus.events import MachineFailed
from contracts.ids import derived_event_id
from contracts.status import MachineStatus
from controlplane.bus import Bus
from controlplane.store import Store

log = structlog.get_logger(__name__)
_MAX_REASON = 2000


async def fail_machine(
    store: Store, bus: Bus, machine_id: str, *, stage: str, reason: str, cause_event_id: str
) -> None:
    reason = reason.strip()[-_MAX_REASON:] or "unknown reason"
    t = await store.transition(machine_id, MachineStatus.FAILED, f"{stage} failed: {reason}")
    if not t.accepted:  # archived, or not a machine: a repeat (failed already) publishes again
        log.info("machine.fail_skipped", machine_id=machine_id, status=t.previous, stage=stage)
        return
    # Republishing on a retry is safe: the derived id makes JetStream drop the duplicate.
    await bus.publish(
        MachineFailed(
            event_id=derived_event_id(cause_event_id, "failed"),
            machine_id=machine_id,
            stage=stage,
            reason=reason,
        )
    )
