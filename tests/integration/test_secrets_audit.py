"""A machine's first use of a secret on the real servers: the stack's gateway and a second
gateway replica share the durable ``gateway-audit``, so each ``machine.secret-used`` becomes
exactly one entry of the audit stream, its instance looked up. (The event's publishing and the
entry's shape, in memory: tests/fast/test_secret_use.py.)"""

from __future__ import annotations

from contextlib import AsyncExitStack

from contracts.bus.consumers import Durable
from contracts.bus.events import MachineSecretUsed
from contracts.bus.subjects import STREAM_NAME
from contracts.gateway import audit as a
from contracts.ids import new_event_id
from controlplane.bus import Bus
from controlplane.events.subscriptions import enter_subscriptions
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from services.gateway.auth import AuditLog, SecretUseAudit
from tests.waiters import wait_until

USES = 40
HOST = "api.example.com:443"


async def test_each_first_use_is_one_entry_with_two_gateway_replicas(
    stack: FleetClient, settings: Settings, store: Store, bus: Bus
) -> None:
    inst = (await stack.create_instance("secret-user")).id
    mid = (await stack.create_machine(inst)).id  # its record is what the audit log looks up
    names = [f"KEY_{n}" for n in range(USES)]
    found: list[a.AuditEntry] = []

    async def stored(count: int) -> None:
        async def enough() -> bool:
            found[:] = await stack.audit(method=a.Action.SECRET_FIRST_USE, machine_id=mid,
                                         limit=1000)  # fmt: skip
            return len(found) >= count

        await wait_until(enough, timeout=30)

    async def publish(some: list[str]) -> None:
        await bus.publish_many(
            MachineSecretUsed(event_id=new_event_id(), machine_id=mid, secret=n, host=HOST)
            for n in some
        )

    await publish(names[:1])  # the stack's gateway alone, as its __main__ wires it
    await stored(1)
    async with AsyncExitStack() as replica:  # a second gateway's audit log and consumer
        log = await replica.enter_async_context(AuditLog(settings, store))
        await enter_subscriptions(replica, [SecretUseAudit(log)], bus, settings)
        await publish(names[1:])

        async def all_acked() -> bool:
            info = await bus.js.consumer_info(STREAM_NAME, Durable.GATEWAY_AUDIT.value)
            return (info.num_pending, info.num_ack_pending) == (0, 0)

        await wait_until(all_acked, timeout=30)
    await stored(USES)
    assert sorted(e.params["name"] for e in found) == sorted(names)  # each once, none twice
    assert {(e.actor, e.instance_id, e.ok, e.params["host"]) for e in found} == {
        (a.EGRESS_PROXY, inst, True, HOST)}  # fmt: skip
