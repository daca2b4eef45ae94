"""``machine.egress-denied`` is rate-limited per machine: past the burst, refusals are counted
and the count goes with that machine's next event. The events from real refusals, on both
providers: tests/integration/test_egress.py."""

from __future__ import annotations

from contracts.events import MachineEgressDenied
from services.provisioner.egress_events import EgressEvents
from tests.fakes.bus import FakeBus


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
