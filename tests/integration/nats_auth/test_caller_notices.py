"""Only gateways send and hear the notices of changes to callers: they travel in the gateway's
own account, and neither a machine nor the services' or the monitor's user may publish or
subscribe on the subject, so no machine can make the gateways forget or keep a caller, or learn
when one changed."""

from __future__ import annotations

import msgspec

from contracts.bus import subjects
from contracts.people import CallersChanged
from controlplane.security.crypto import SecretBox
from controlplane.store import Store
from fleet.client import FleetClient
from fleet.up.embedded import NatsAuth, NatsServer
from tests.integration.nats_auth.helpers import Attacker, connect_as, enroll
from tests.waiters import before_marker, subscribed

FORGED = msgspec.json.encode(CallersChanged(replica="forged"))


async def test_only_gateways_send_and_hear_notices_of_changes_to_callers(
    callout: None,
    stack: FleetClient,
    store: Store,
    box: SecretBox,
    nats_server: NatsServer,
    nats_auth: tuple[NatsAuth, str],
) -> None:
    auth, _ = nats_auth
    machine, token = await enroll(store, box)
    notices = subjects.CALLERS_CHANGED
    gateways = await connect_as(nats_server, auth.AUDIT_USER, auth.audit_password)
    try:
        async with subscribed(gateways, notices) as heard:
            for user, password in ((machine, token), (auth.SERVICE_USER, auth.service_password),
                                   (auth.MONITOR_USER, auth.monitor_password)):  # fmt: skip
                attacker = Attacker()
                nc = await connect_as(nats_server, user, password, attacker)
                try:
                    await nc.subscribe(notices)
                    await nc.publish(notices, FORGED)
                    await nc.flush()
                    await attacker.violated("subscription", notices)
                    await attacker.violated("publish", notices)
                finally:
                    await nc.close()
            assert await before_marker(gateways, notices, heard) == []  # no forgery got through

            await stack.create_user("noticed@example.com")
            await stack.disable_user("noticed@example.com")  # the gateway's own notice arrives
            notice = msgspec.json.decode((await heard.next()).data, type=CallersChanged)
            assert notice.replica != "forged"
    finally:
        await gateways.close()
