"""A machine whose daemon never reports ready fails at the boot stage; it does not hang."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import msgspec

from contracts import subjects
from contracts.consumers import Durable
from contracts.events import MachineFailed, MachineProvisioned
from contracts.ids import new_event_id
from contracts.status import MachineStatus as S
from controlplane.bus import Bus
from controlplane.settings import Settings
from controlplane.store import Store
from services.prober.__main__ import build as prober
from tests.waiters import Inbox, subscribed, wait_until


@asynccontextmanager
async def watched_machine(
    settings: Settings, store: Store, bus: Bus
) -> AsyncIterator[tuple[str, Inbox]]:
    """A booting machine whose `provisioned` event the prober (boot timeout 1 s) has received,
    and an inbox of its `machine.failed` events."""
    inst = await store.create_instance("watchdog")
    m = await store.create_machine(inst.id, "local")
    await store.transition(m.id, S.PROVISIONING, "starting")
    await store.transition(m.id, S.BOOTING, "waiting", external_id="local:999999")
    quick = msgspec.structs.replace(settings, boot_timeout_s=1.0)
    async with AsyncExitStack() as es, subscribed(bus.nc, f"machine.failed.{m.id}") as failed:
        await prober(quick, es)
        await bus.publish(
            MachineProvisioned(
                event_id=new_event_id(),
                machine_id=m.id,
                provider="local",
                external_id="local:999999",
            )
        )
        yield m.id, failed


async def test_silent_daemon_fails_the_machine_at_boot(
    settings: Settings, store: Store, bus: Bus
) -> None:
    async with watched_machine(settings, store, bus) as (mid, failed):
        event = await failed.next_event(timeout=15)
    assert isinstance(event, MachineFailed)
    assert event.stage == "boot"
    machine = await store.get_machine(mid)
    assert machine.status is S.FAILED
    assert "did not report ready within 1s" in machine.status_reason


async def test_a_machine_that_booted_is_left_alone(
    settings: Settings, store: Store, bus: Bus
) -> None:
    async with watched_machine(settings, store, bus) as (mid, failed):
        await store.transition(mid, S.SETTING_UP, "the daemon reported ready")

        async def watchdog_done() -> bool:
            # The watchdog acks the provisioned event only once it has decided (after the 1 s
            # boot timeout): failing the machine, or leaving it alone.
            info = await bus.js.consumer_info(subjects.STREAM_NAME, Durable.PROBER_BOOT)
            return info.num_pending == 0 and info.num_ack_pending == 0

        await wait_until(watchdog_done, timeout=15)
        # It decided: had it failed the machine, the status would say so before the ack.
        assert (await store.get_machine(mid)).status is S.SETTING_UP
        assert failed.queue.empty()
