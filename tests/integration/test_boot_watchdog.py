"""A machine whose daemon never reports ready fails at the boot stage; it does not hang."""

from __future__ import annotations

from contextlib import AsyncExitStack

import msgspec
import pytest

from contracts.events import MachineFailed, MachineProvisioned
from contracts.ids import new_event_id
from contracts.status import MachineStatus as S
from services.common.bus import Bus
from services.common.settings import Settings
from services.common.store import Store
from services.prober.__main__ import build as prober
from tests.waiters import subscribed


async def booting_machine(store: Store) -> str:
    inst = await store.create_instance("watchdog")
    m = await store.create_machine(inst.id, "local")
    await store.transition(m.id, S.PROVISIONING, "starting")
    await store.transition(m.id, S.BOOTING, "waiting", externalId="local:999999")
    return m.id


async def test_silent_daemon_fails_the_machine_at_boot(
    settings: Settings, store: Store, bus: Bus
) -> None:
    quick = msgspec.structs.replace(settings, boot_timeout_s=1.0)
    mid = await booting_machine(store)
    async with AsyncExitStack() as es, subscribed(bus.nc, f"machine.failed.{mid}") as failed:
        await prober(quick, es)
        await bus.publish(
            MachineProvisioned(
                event_id=new_event_id(),
                machine_id=mid,
                provider="local",
                external_id="local:999999",
            )
        )
        event = await failed.next_event(timeout=15)
    assert isinstance(event, MachineFailed)
    assert event.stage == "boot"
    machine = await store.get_machine(mid)
    assert machine.status is S.FAILED
    assert "did not report ready within 1s" in machine.status_reason


async def test_a_machine_that_booted_is_left_alone(
    settings: Settings, store: Store, bus: Bus
) -> None:
    quick = msgspec.structs.replace(settings, boot_timeout_s=1.0)
    mid = await booting_machine(store)
    async with AsyncExitStack() as es, subscribed(bus.nc, f"machine.failed.{mid}") as failed:
        await prober(quick, es)
        await bus.publish(
            MachineProvisioned(
                event_id=new_event_id(),
                machine_id=mid,
                provider="local",
                external_id="local:999999",
            )
        )
        await store.transition(mid, S.SETTING_UP, "the daemon reported ready")
        # Well past the 1 s boot timeout (the watchdog has looked again): nothing failed.
        with pytest.raises(TimeoutError):
            await failed.next(timeout=3.0)
    assert (await store.get_machine(mid)).status is S.SETTING_UP
