"""Only the gateway may write the audit log: the stream is in an account of its own, which no
machine and no other service can reach, and the services' user may not publish on audit.>."""

from __future__ import annotations

import nats.js.errors
import pytest

from contracts.gateway import audit as a
from controlplane.security.crypto import SecretBox
from controlplane.store import Store
from fleet.client import FleetClient
from fleet.up.embedded import NatsAuth, NatsServer
from tests.integration.nats_auth.helpers import Attacker, connect_as, enroll
from tests.integration.test_audit import entry

FORGED = b'{"id":"forged","actor":"someone-else","method":"env.set","ok":true}'


async def test_only_the_gateway_writes_the_audit_stream(
    callout: None,
    stack: FleetClient,
    store: Store,
    box: SecretBox,
    nats_server: NatsServer,
    nats_auth: tuple[NatsAuth, str],
) -> None:
    auth, _ = nats_auth
    inst = await stack.create_instance("audited")
    await entry(stack, "instances.create")  # the gateway's own entries are stored
    machine, token = await enroll(store, box)
    forged_on = a.audit_subject(inst.id, machine)
    for user, password in ((machine, token), (auth.SERVICE_USER, auth.service_password),
                           (auth.MONITOR_USER, auth.monitor_password)):  # fmt: skip
        attacker = Attacker()
        nc = await connect_as(nats_server, user, password, attacker)
        try:
            await nc.publish(forged_on, FORGED)
            await nc.flush()
            await attacker.violated("publish", forged_on)
            if user == auth.SERVICE_USER:  # the stream is not in its account at all
                with pytest.raises(nats.js.errors.NotFoundError):
                    await nc.jetstream().stream_info(a.AUDIT_STREAM)
        finally:
            await nc.close()
    assert await stack.audit(actor="someone-else") == []
    assert [e.method for e in await stack.audit(instance_id=inst.id)] == ["instances.create"]
