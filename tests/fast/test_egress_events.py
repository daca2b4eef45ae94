"""``machine.egress-denied`` is rate-limited per machine: past the burst, refusals are counted
and the count goes with that machine's next event; a machine that stops or is archived takes
its budget along. The events from real refusals, on both providers:
tests/integration/test_egress.py."""

from __future__ import annotations

import pytest

from contracts.bus.events import MachineEgressDenied
from services.provisioner.egress.events import EgressEvents
from tests.fakes.bus import FakeBus
from tests.fast.conftest import World


async def test_refusals_past_the_burst_are_counted_into_the_next_event() -> None:
    bus = FakeBus()
    now = [0.0]
    events = EgressEvents(bus, burst=2, window_s=10, clock=lambda: now[0])  # type: ignore[arg-type]
    async with events:
        for i in range(5):
            events.refused("m-a", f"n{i}.test", "denied")
        events.refused("m-b", "other.test", "rebinding", "127.0.0.1")
        now[0] = 10.0  # the next window
        events.refused("m-a", "n5.test", "denied")
    sent = [e for e in bus.events if isinstance(e, MachineEgressDenied)]
    assert [(e.machine_id, e.name, e.dropped) for e in sent] == [
        ("m-a", "n0.test", 0), ("m-a", "n1.test", 0), ("m-b", "other.test", 0),
        ("m-a", "n5.test", 3),
    ]  # fmt: skip
    assert sent[2].destination == "127.0.0.1"
    assert sent[2].reason == "rebinding"


@pytest.mark.parametrize("method", ["machines.stop", "machines.archive"])
async def test_a_machine_that_stops_or_is_archived_takes_its_budget_along(
    world: World, method: str
) -> None:
    events = EgressEvents(world.bus, burst=1, window_s=3600)
    world.provisioner.machines.egress.refusals = events
    machine = await world.ready_machine()
    async with events:
        events.refused(machine.id, "a.test", "denied")
        events.refused(machine.id, "b.test", "denied")  # past the burst: counted
        await world.rpc(method, {"machineId": machine.id})
        await world.bus.settle()
        events.refused(machine.id, "c.test", "denied")  # a budget of its own again
    sent = [e for e in world.bus.events if isinstance(e, MachineEgressDenied)]
    assert [(e.name, e.dropped) for e in sent] == [("a.test", 0), ("c.test", 0)]
