"""A machine made once under a key (``store.creates``), then its remaining work: archive the
machine it replaces (a rebuild) and publish ``machine.created``. Used by the gateway's
``machines.create`` and ``machines.rebuild`` with an ``idempotencyKey`` (``once_of``: the key is
scoped to the calling token, so the client's retries of one logical call, its first answer lost
to a failover or a cut connection, make one machine, and a retried rebuild archives the machine
it replaced, never the one it made) and by the prober's rebuild of a lost host's machines, whose
key is derived from the machine it replaces.

The key is stored with the machine record in one step (``store.creates``), which also reads the
instance's current machine: the one a rebuild replaces. A repeat with the same method and params
answers the machine the key names; with others it is ``IdempotencyKeyReused``. A repeat that
finds the machine still ``created`` (no stage has touched it: the first call may have stopped
before its events went out, on a bus outage or a crash) does the remaining work again. Both
events carry ids derived from the machine's, so the stream's duplicate window drops a repeat
inside it; after it, the provisioner's compare-and-set skips a machine already past
``created``, and archiving is idempotent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import structlog

from contracts.bus.events import MachineCreated
from contracts.errors import IdempotencyKeyReused
from contracts.ids import derived_event_id
from contracts.models import Machine, RuntimeChoice
from contracts.status import MachineStatus as S
from controlplane.bus import Bus
from controlplane.store import CreateOnce, Once, Store

log = structlog.get_logger(__name__)

#: A rebuild's archive of the machine it replaced, with an event id derived from that
#: machine's: ``archive(machine_id)``.
Archive = Callable[[str], Awaitable[object]]


def fingerprint(method: str, *asks: str) -> str:
    """What a key's call asked for: its method and params (not the key itself)."""
    return hashlib.sha256("\0".join((method, *asks)).encode()).hexdigest()


def once_of(
    method: str, key: str | None, scope: str, ttl_s: float, *asks: str
) -> CreateOnce | None:
    """The key of a call, if it has one, scoped to ``scope`` (the calling token). The
    fingerprint covers the method and what the call asks for (``asks``: the instance, a
    create's provider), not the key itself."""
    if key is None:
        return None
    return CreateOnce(scope=scope, key=key, fingerprint=fingerprint(method, *asks), ttl_s=ttl_s)


async def make(
    store: Store,
    bus: Bus,
    instance_id: str,
    provider: str,
    once: CreateOnce,
    archive: Archive | None = None,
    runtime: RuntimeChoice | None = None,
) -> Machine:
    """The machine of a keyed create (``archive`` None) or rebuild: made, the replaced machine
    archived (a rebuild), then ``machine.created``. A failure after the record was written
    leaves the machine ``created`` (not ``failed``, which the retry could not undo): the
    client's retry with this key finishes the job."""
    machine, got = await store.create_machine_once(instance_id, provider, once, runtime)
    if not got.created:  # another call with this key got there first (a concurrent retry)
        return await repeat(store, bus, once, got, archive)
    await _finish(bus, machine, got, archive)
    log.info("machine.created", machine_id=machine.id, instance_id=instance_id, once=True,
             replaced=got.replaces if archive else None)  # fmt: skip
    return machine


async def repeat(
    store: Store, bus: Bus, once: CreateOnce, got: Once, archive: Archive | None = None
) -> Machine:
    """The answer to a call whose key already names a machine."""
    if got.fingerprint != once.fingerprint:
        raise IdempotencyKeyReused(
            "this idempotencyKey was used for another call (another method, instance or "
            "provider): use a new key for a new logical call",
            data={"machineId": got.machine_id},
        )
    machine = await store.get_machine(got.machine_id)
    again = machine.status is S.CREATED
    if again:
        await _finish(bus, machine, got, archive)
    log.info("machine.create_repeated", machine_id=machine.id, republished=again)
    return machine


async def _finish(bus: Bus, machine: Machine, got: Once, archive: Archive | None) -> None:
    # The archive first, as an unkeyed rebuild does: the old daemon is asked to stop before
    # the new machine is started.
    if archive is not None and got.replaces is not None:
        await archive(got.replaces)
    event = MachineCreated(
        event_id=derived_event_id(machine.id, "machine.created"),
        machine_id=machine.id,
        instance_id=machine.instance_id,
        provider=machine.provider,
    )
    await bus.publish(event)
