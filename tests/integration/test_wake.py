"""Wake on access (docs/stop-start.md#wake-on-access) with every service and real daemons: an
exec on a stopped machine starts it within the call and is answered, and ``machine.started``
says ``by: exec``; calls at once start it once. A preview of a paused gvisor machine:
tests/integration/test_gvisor_pause.py. The rules in memory: tests/fast/test_wake.py."""

from __future__ import annotations

import asyncio

from contracts.bus.events import MachineStarted
from contracts.status import MachineStatus
from fleet.client import FleetClient
from tests.integration.test_gvisor_pause import events_of
from tests.stop_checks import ready_machine


async def test_an_exec_on_a_stopped_machine_starts_it_once_and_is_answered(
    stack: FleetClient,
) -> None:
    mid = await ready_machine(stack, "wake-exec")
    await stack.stop_machine(mid)
    await stack.wait_for(mid, ("stopped",), timeout_s=60)
    ran = await asyncio.gather(*(stack.exec(mid, ["echo", f"awake {i}"], timeout_s=60)
                                 for i in range(3)))  # fmt: skip
    assert [(r.exit_code, r.stdout) for r in ran] == [(0, f"awake {i}\n") for i in range(3)]
    assert (await stack.get_machine(mid)).status is MachineStatus.READY
    started = await events_of(stack, mid, MachineStarted)
    assert [(e.by, e.reason) for e in started if isinstance(e, MachineStarted)] == [
        ("exec", "woken by exec")
    ]
