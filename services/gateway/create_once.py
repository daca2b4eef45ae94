"""``machines.create`` with an ``idempotencyKey``: the client's retries of one logical create
(its first answer lost to a failover or a cut connection) make one machine.

The key is scoped to the calling token and stored with the machine record in one step
(``store.creates``). A repeat with the same params answers the machine the key names; with
other params it is ``IdempotencyKeyReused``. ``machine.created`` carries an id derived from
the machine's, so a repeat that publishes it again (the first call's publish failed, or is
still under way) is dropped by the stream's duplicate window: one event per machine.
"""

from __future__ import annotations

import hashlib

import structlog

from contracts.errors import IdempotencyKeyReused
from contracts.events import MachineCreated
from contracts.gateway_types import CreateMachineParams
from contracts.ids import derived_event_id
from contracts.models import Machine
from contracts.status import MachineStatus as S
from services.common.bus import Bus
from services.common.settings import Settings
from services.common.store import Store
from services.common.store_creates import CreateOnce, Once
from services.gateway.access import Caller

log = structlog.get_logger(__name__)


def once_of(p: CreateMachineParams, c: Caller, provider: str, s: Settings) -> CreateOnce | None:
    """The key of this call, if it has one. The fingerprint covers what the call asks for
    (the instance and the provider it resolves to), not the key itself."""
    if p.idempotency_key is None:
        return None
    digest = hashlib.sha256(f"{p.instance_id}\0{provider}".encode()).hexdigest()
    return CreateOnce(scope=c.token_id, key=p.idempotency_key, fingerprint=digest,
                      ttl_s=s.idempotency_ttl_s)  # fmt: skip


async def create(
    store: Store, bus: Bus, instance_id: str, provider: str, once: CreateOnce
) -> Machine:
    machine, got = await store.create_machine_once(instance_id, provider, once)
    if not got.created:  # another call with this key got there first (a concurrent retry)
        return await repeat(store, bus, once, got)
    # A publish that fails leaves the machine `created`: the client's retry with this key
    # publishes it (not `failed`, which the retry could not undo).
    await _publish(store, bus, machine, once)
    log.info("machine.created", machine_id=machine.id, instance_id=instance_id, once=True)
    return machine


async def repeat(store: Store, bus: Bus, once: CreateOnce, got: Once) -> Machine:
    """The answer to a call whose key already names a machine."""
    if got.fingerprint != once.fingerprint:
        raise IdempotencyKeyReused(
            "this idempotencyKey was used for a machines.create with other params "
            "(another instance or provider): use a new key for a new machine",
            data={"machineId": got.machine_id},
        )
    machine = await store.get_machine(got.machine_id)
    if not got.published and machine.status is S.CREATED:
        await _publish(store, bus, machine, once)
    log.info("machine.create_repeated", machine_id=machine.id, published=got.published)
    return machine


async def _publish(store: Store, bus: Bus, machine: Machine, once: CreateOnce) -> None:
    event = MachineCreated(
        event_id=derived_event_id(machine.id, "machine.created"),
        machine_id=machine.id,
        instance_id=machine.instance_id,
        provider=machine.provider,
    )
    await bus.publish(event)
    await store.creates.mark_published(once)
