"""A machine with its own token gets in, bound to itself as a machine of the APP account;
any other credentials are refused at connect and change nothing."""

from __future__ import annotations

import statistics
import time

import pytest

from contracts.bus import subjects
from contracts.ids import new_machine_id
from contracts.status import MachineStatus
from controlplane.bus import Bus
from controlplane.calls.daemon_client import DaemonClient, static_key
from controlplane.security.crypto import SecretBox, mint_machine_token
from controlplane.store import Store
from fleet.up.embedded import NatsAuth, NatsServer
from tests.conftest import SpawnDaemon
from tests.integration.nats_auth.helpers import (
    REFUSED,
    STATUS,
    boot,
    connect_as,
    connz,
    enroll,
    refused,
    stream_seq,
)
from tests.waiters import before_marker, subscribed, wait_until


# --- a machine that is who it says it is ------------------------------------------------------
async def test_machine_connects_with_its_token_and_is_bound_to_the_app_account(
    callout: None, bus: Bus, store: Store, box: SecretBox, spawn_daemon: SpawnDaemon
) -> None:
    mid, token = await enroll(store, box)
    d = await boot(bus, spawn_daemon, mid, token)
    # The report was stored: the daemon got JetStream's ack on its private inbox.
    await wait_until(lambda: "daemon.ready" in d.output())
    assert "report_retry" not in d.output()
    assert await stream_seq(bus, subjects.event(STATUS, mid)) > 0
    # Bound to the services' account (the user JWT's aud), as the machine itself.
    [conn] = await connz(bus, mid)
    assert (conn["account"], conn["authorized_user"]) == ("APP", mid)
    # The platform reaches it, and it answers (a reply to a request it received).
    r = await DaemonClient(bus.nc, keys=static_key(token)).machine(mid).run("echo", "hi")
    assert r.stdout == "hi\n"


async def test_connect_time_through_the_callout(
    callout: None,
    store: Store,
    box: SecretBox,
    nats_server: NatsServer,
    nats_auth: tuple[NatsAuth, str],
) -> None:
    mid, token = await enroll(store, box)
    auth, _ = nats_auth

    async def timed(user: str, password: str) -> list[float]:
        times = []
        for _ in range(30):
            started = time.perf_counter()
            nc = await connect_as(nats_server, user, password)
            times.append((time.perf_counter() - started) * 1000)
            await nc.close()
        return times

    static = await timed(auth.MONITOR_USER, auth.monitor_password)  # no callout: the baseline
    machine = await timed(mid, token)
    print(
        f"\nconnect (nats-py, loopback, n={len(machine)}): machine through the callout median "
        f"{statistics.median(machine):.2f} ms (min {min(machine):.2f}, max {max(machine):.2f}); "
        f"static user median {statistics.median(static):.2f} ms"
    )
    assert statistics.median(machine) < 100


# --- credentials that are not a live machine's -------------------------------------------------
@pytest.mark.parametrize(
    "case",
    [
        "wrong-token",
        "other-machines-token",
        "unknown-machine",
        "not-a-machine",
        "service-user-with-a-machine-token",
        "empty-token",
        "revoked",
        "archived",
    ],
)
async def test_bad_credentials_are_refused_at_connect(
    case: str, callout: None, bus: Bus, store: Store, box: SecretBox, nats_server: NatsServer
) -> None:
    mid, token = await enroll(store, box)
    _, other_token = await enroll(store, box)
    user, password = mid, token
    if case == "wrong-token":
        password = mint_machine_token()
    elif case == "other-machines-token":
        password = other_token
    elif case == "unknown-machine":
        user = new_machine_id()
    elif case == "not-a-machine":
        user = "fleet:machine:" + mid  # a Redis key, not an id
    elif case == "service-user-with-a-machine-token":
        user = NatsAuth.SERVICE_USER
    elif case == "empty-token":
        password = ""
    elif case == "revoked":
        await store.revoke_machine_token(mid)
    elif case == "archived":
        await store.transition(mid, MachineStatus.ARCHIVING, "archived by the test")
    before = await store.redis.hgetall(store.keys.k_machine(mid))
    conns = [c["cid"] for c in await connz(bus, user)]  # the services' own, for that user

    await refused(nats_server, user, password)

    assert await store.redis.hgetall(store.keys.k_machine(mid)) == before
    assert [c["cid"] for c in await connz(bus, user)] == conns
    assert await stream_seq(bus, subjects.event(STATUS, mid)) == 0


async def test_daemon_with_a_wrong_token_never_gets_in(
    callout: None, bus: Bus, store: Store, box: SecretBox, spawn_daemon: SpawnDaemon
) -> None:
    mid, _ = await enroll(store, box)
    async with subscribed(bus.nc, subjects.machine_events(mid)) as inbox:
        d = spawn_daemon(mid, FLEET_MACHINE_TOKEN=mint_machine_token())
        # It keeps trying (a machine outlives NATS outages) and is refused every time.
        await wait_until(lambda: d.output().count(REFUSED) >= 2, timeout=15)
        assert await before_marker(bus.nc, subjects.heartbeat(mid), inbox) == []
    assert await connz(bus, mid) == []
    assert (await store.get_machine(mid)).status is MachineStatus.CREATED
