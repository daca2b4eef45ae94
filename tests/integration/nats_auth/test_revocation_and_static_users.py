"""Revoking a machine closes its connections and refuses it from then on; the static monitor
user reads events and nothing else; the generated server config holds no machine secret."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig

from contracts.bus import subjects
from contracts.bus.events import kind_of
from contracts.status import MachineStatus
from controlplane.bus import Bus
from controlplane.machines.revoke import machine_connections, revoke_machine
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from fleet.up.embedded import NatsAuth, NatsServer
from providers.local.processes import running_pid
from providers.local.supervision import exit_records
from tests.conftest import SpawnDaemon
from tests.integration.nats_auth.helpers import (
    REFUSED,
    STATUS,
    Attacker,
    boot,
    connect_as,
    connz,
    enroll,
    forged_report,
    refused,
    stream_seq,
)
from tests.waiters import wait_until


# --- revocation ---------------------------------------------------------------------------------
async def test_revoking_closes_the_live_connection_and_refuses_reconnects(
    callout: None,
    bus: Bus,
    store: Store,
    box: SecretBox,
    spawn_daemon: SpawnDaemon,
    nats_server: NatsServer,
) -> None:
    mid, token = await enroll(store, box)
    d = await boot(bus, spawn_daemon, mid, token)
    stolen = await connect_as(nats_server, mid, token)  # a second copy of the credentials
    assert len(await connz(bus, mid)) == 2

    await store.transition(mid, MachineStatus.ARCHIVING, "archived by the test")
    assert await revoke_machine(store, bus.nc, mid) == 2

    await wait_until(lambda: stolen.is_closed)
    await wait_until(lambda: d.output().count(REFUSED) >= 1, timeout=15)  # reconnect refused
    assert await connz(bus, mid) == []
    await refused(nats_server, mid, token)
    assert await machine_connections(bus.nc, mid) == []
    assert await revoke_machine(store, bus.nc, mid) == 0  # idempotent


async def test_archiving_through_the_api_revokes_the_machine(
    callout: None, stack: FleetClient, bus: Bus, store: Store, box: SecretBox,
    settings: Settings, nats_server: NatsServer,
) -> None:  # fmt: skip
    inst = await stack.create_instance("demo")
    mid = (await stack.create_machine(inst.id)).id
    assert (await stack.wait_for(mid, {"ready", "failed"}, timeout_s=60)).status == "ready"
    sealed = await store.machine_secret(mid)
    assert sealed is not None
    token = box.decrypt(sealed)
    # Someone copied the machine's credentials and holds a connection open with them.
    stolen = await connect_as(nats_server, mid, token)

    await stack.archive_machine(mid)

    await wait_until(lambda: stolen.is_closed, timeout=15)  # kicked by the provisioner
    machine_dir = settings.data_path / "machines" / mid
    await wait_until(lambda: running_pid(machine_dir, mid) is None, timeout=15)
    await refused(nats_server, mid, token)
    assert await connz(bus, mid) == []
    assert (await store.machine_access(mid)).revoked


async def test_archive_lets_the_daemon_stop_cleanly_before_revoking_it(
    callout: None, stack: FleetClient, settings: Settings, store: Store
) -> None:
    """Asked to stop before it is revoked, the daemon reports ``stopping``, ends cleanly (its
    supervisor and sandbox exit 0, not by the provider's SIGTERM), and is then revoked."""
    inst = await stack.create_instance("clean")
    mid = (await stack.create_machine(inst.id)).id
    assert (await stack.wait_for(mid, {"ready", "failed"}, timeout_s=60)).status == "ready"
    machine_dir = settings.data_path / "machines" / mid
    pid = running_pid(machine_dir, mid)
    assert pid is not None

    start = asyncio.get_running_loop().time()
    await stack.archive_machine(mid)
    assert asyncio.get_running_loop().time() - start < 2.0  # well under stop_wait_s + RPC
    await wait_until(lambda: running_pid(machine_dir, mid) is None, timeout=15)

    def reaped() -> list[dict[str, object]]:
        return [r for r in exit_records(settings.data_path) if "code" in r and r["pid"] == pid]

    await wait_until(lambda: bool(reaped()), timeout=15)

    kinds = []
    async for _, event in stack.events(mid, follow=False):
        kinds.append((kind_of(event).value, getattr(event, "status", None)))
    stopping = kinds.index(("daemon-status-reported", "stopping"))
    assert stopping < kinds.index(("archived", None)), kinds
    assert [r["code"] for r in reaped()] == [0]  # its own clean exit
    records = [r for r in exit_records(settings.data_path) if r["machineId"] == mid]
    assert all(r.get("endedBy") != "SIGKILL" for r in records), records
    log = (machine_dir / "daemon.log").read_text()
    assert "daemon.shutdown_unclean" not in log
    assert "asked to stop by the platform" in log
    assert (await store.machine_access(mid)).revoked


# --- the static users -------------------------------------------------------------------------
async def test_monitor_user_reads_events_and_nothing_else(
    callout: None,
    bus: Bus,
    store: Store,
    box: SecretBox,
    spawn_daemon: SpawnDaemon,
    nats_server: NatsServer,
    nats_auth: tuple[NatsAuth, str],
) -> None:
    auth, _ = nats_auth
    watcher = Attacker()
    async with await nats.connect(
        nats_server.url,
        user=auth.MONITOR_USER,
        password=auth.monitor_password,
        inbox_prefix=auth.MONITOR_INBOX_PREFIX,
        allow_reconnect=False,
        error_cb=watcher.on_error,
    ) as mon:  # closed however the test ends: a leaked socket fails a later test
        live: asyncio.Queue[Msg] = asyncio.Queue()

        async def on_live(msg: Msg) -> None:
            live.put_nowait(msg)

        await mon.subscribe(subjects.ALL_MACHINE_EVENTS, cb=on_live)
        await mon.flush()
        mid, token = await enroll(store, box)
        await boot(bus, spawn_daemon, mid, token)
        status = subjects.event(STATUS, mid)
        assert (await asyncio.wait_for(live.get(), 10)).subject == status
        # Stored events, read back from the stream. The server hands a message to its subscribers
        # and to the stream's store side by side: seen live is not yet stored.
        js = mon.jetstream(timeout=2)

        async def stored() -> bool:
            return await stream_seq(bus, status) > 0

        await wait_until(stored, timeout=10)
        assert (await js.get_last_msg(subjects.STREAM_NAME, status)).subject == status
        assert (await js.stream_info(subjects.STREAM_NAME)).state.messages >= 1

        # Read-only: no publishing, no RPC traffic, no replies of others.
        for subject in (status, subjects.daemon_rpc(mid)):
            await mon.publish(subject, forged_report(mid))
            await watcher.violated("publish", subject)
        others_inbox = subjects.machine_inbox_prefix(mid) + ".>"
        for subject in (subjects.daemon_rpc(mid), "_INBOX.>", others_inbox):
            await mon.subscribe(subject)
            await watcher.violated("subscription", subject)
        # No consumers: creating an "ephemeral" one named like a stage's durable consumer would
        # rewrite that consumer's filter (the server treats it as an update).
        durable = "stage-x"
        await bus.js.add_consumer(
            subjects.STREAM_NAME,
            ConsumerConfig(durable_name=durable, filter_subject="machine.created.*"),
        )
        create = f"$JS.API.CONSUMER.CREATE.{subjects.STREAM_NAME}"
        body = {
            "stream_name": subjects.STREAM_NAME,
            "config": {
                "name": durable,
                "filter_subject": "machine.ready.*",
                "ack_policy": "explicit",
            },
        }
        with pytest.raises(nats.errors.TimeoutError):
            await mon.request(create, json.dumps(body).encode(), timeout=0.5)
        await watcher.violated("publish", create)
        info = await bus.js.consumer_info(subjects.STREAM_NAME, durable)
        assert info.config.filter_subject == "machine.created.*"
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await js.subscribe(subjects.ALL_MACHINE_EVENTS, ordered_consumer=True)


async def test_generated_config_holds_no_machine_secret(
    callout: None,
    bus: Bus,
    store: Store,
    box: SecretBox,
    spawn_daemon: SpawnDaemon,
    nats_server: NatsServer,
    nats_auth: tuple[NatsAuth, str],
    tmp_path: Path,
) -> None:
    mid, token = await enroll(store, box)
    await boot(bus, spawn_daemon, mid, token)
    auth, seed = nats_auth
    text = nats_server.config_path.read_text()
    assert token not in text
    assert mid not in text
    assert seed not in text  # only the issuer's public key
    assert auth.issuer_public_key in text
    for path in (nats_server.config_path, tmp_path / "nats-auth.json"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # The same file gives the same auth (a restart keeps the users and the issuer).
    again, again_seed = NatsAuth.load_or_create(tmp_path / "nats-auth.json")
    assert (again, again_seed) == (auth, seed)
