"""NATS authenticates every connection and confines every machine to itself (the auth callout).

These tests attack as a hostile machine would, with its own valid credentials or with guessed
ones, and assert each attack fails and changes nothing. The NATS server here is the embedded one
with ``NatsAuth`` (accounts AUTH/APP/SYS, static service users, the callout for everyone else);
the callout service runs in this process; daemons are real processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import msgspec
import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig

from contracts import subjects
from contracts.events import DaemonStatusReported, encode_event
from contracts.ids import new_machine_id
from contracts.status import MachineStatus
from fleet.client import FleetClient
from fleet.embedded import NatsAuth, NatsServer, ValkeyServer, free_port
from providers.local import running_pid
from services.auth_callout.__main__ import build as build_callout
from services.common.bus import Bus
from services.common.crypto import SecretBox, generate_secret_key, mint_machine_token
from services.common.daemon_client import DaemonClient, static_key
from services.common.revoke import machine_connections, revoke_machine
from services.common.settings import Settings
from services.common.store import Store, k_machine
from tests.conftest import ADMIN_TOKEN, DaemonProc, SpawnDaemon
from tests.waiters import before_marker, subscribed, wait_until

STATUS = subjects.EventKind.DAEMON_STATUS_REPORTED
REFUSED = "Authorization Violation"


# --- fixtures: these override conftest's, so its `store`, `bus`, `spawn_daemon` and `stack`
# --- run against the authenticating server with the services' own credentials.
@pytest.fixture
def nats_auth(tmp_path: Path) -> tuple[NatsAuth, str]:
    return NatsAuth.load_or_create(tmp_path / "nats-auth.json")


@pytest.fixture
def nats_server(tmp_path: Path, nats_auth: tuple[NatsAuth, str]) -> Iterator[NatsServer]:
    with NatsServer(tmp_path / "nats", auth=nats_auth[0]) as server:
        yield server


@pytest.fixture
def settings(
    tmp_path: Path,
    nats_server: NatsServer,
    redis_server: ValkeyServer,
    nats_auth: tuple[NatsAuth, str],
) -> Settings:
    auth, seed = nats_auth
    return Settings(
        nats_url=nats_server.url,
        nats_user=auth.SERVICE_USER,
        nats_password=auth.service_password,
        redis_url=redis_server.url,
        data_dir=str(tmp_path / "data"),
        secret_key=generate_secret_key(),
        admin_token=ADMIN_TOKEN,
        port=free_port(),
        log_level="warning",
        ack_wait_s=5.0,
        probe_timeout_s=10.0,
        probe_interval_s=0.1,
        clone_timeout_s=30.0,
        callout_issuer_seed=seed,
    )


@pytest.fixture
async def callout(settings: Settings, nats_auth: tuple[NatsAuth, str]) -> AsyncIterator[None]:
    """The callout service, wired as its __main__ does, as the AUTH account's user."""
    auth, _ = nats_auth
    own = msgspec.structs.replace(
        settings, nats_user=auth.CALLOUT_USER, nats_password=auth.callout_password
    )
    async with AsyncExitStack() as es:
        await build_callout(own, es)
        yield


@pytest.fixture
def box(settings: Settings) -> SecretBox:
    return SecretBox(settings.secret_key)


# --- helpers ------------------------------------------------------------------------------------
async def enroll(store: Store, box: SecretBox) -> tuple[str, str]:
    """A machine record with a token, as the provisioner leaves it: (machine id, token)."""
    machine = await store.create_machine("i-" + uuid.uuid4().hex[:16], "local")
    token = mint_machine_token()
    assert await store.claim_machine_secret(machine.id, box.encrypt(token))
    return machine.id, token


class Attacker:
    """A NATS connection as some machine, recording the errors the server reports."""

    def __init__(self) -> None:
        self.errors: list[Exception] = []

    async def on_error(self, exc: Exception) -> None:
        self.errors.append(exc)

    def violations(self, kind: str, subject: str) -> list[str]:
        """The server's permission errors for ``kind`` ("publish", "subscription") on
        ``subject`` (nats-py lower-cases them)."""
        wanted = f'permissions violation for {kind} to "{subject}"'.lower()
        return [str(e) for e in self.errors if wanted in str(e).lower()]

    async def violated(self, kind: str, subject: str) -> None:
        await wait_until(lambda: bool(self.violations(kind, subject)), timeout=5)


async def connect_as(
    server: NatsServer, user: str, password: str, attacker: Attacker | None = None
) -> NATS:
    """Connect once, no reconnects, with the machine's private inbox prefix."""
    a = attacker or Attacker()
    prefix = subjects.machine_inbox_prefix(user) if user.startswith("m-") else "_INBOX"
    nc = NATS()
    try:
        await nc.connect(
            server.url,
            user=user,
            password=password,
            inbox_prefix=prefix,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=5,
            error_cb=a.on_error,
        )
    except BaseException:
        await nc.close()  # a refused client leaves its socket open otherwise
        raise
    return nc


async def refused(server: NatsServer, user: str, password: str) -> None:
    with pytest.raises(nats.errors.Error, match=REFUSED):
        await connect_as(server, user, password)


async def connz(bus: Bus, machine_id: str) -> list[dict[str, Any]]:
    """The APP account's open connections authenticated as ``machine_id``."""
    reply = await bus.nc.request(
        "$SYS.REQ.ACCOUNT.PING.CONNZ",
        json.dumps({"user": machine_id, "auth": True}).encode(),
        timeout=5,
    )
    conns: list[dict[str, Any]] = json.loads(reply.data)["data"]["connections"] or []
    return conns


async def boot(
    bus: Bus, spawn_daemon: SpawnDaemon, machine_id: str, token: str, **env: str
) -> DaemonProc:
    """A real daemon connecting with the machine's credentials; returns once it is ready."""
    async with subscribed(bus.nc, subjects.event(STATUS, machine_id)) as inbox:
        d = spawn_daemon(machine_id, FLEET_MACHINE_TOKEN=token, **env)
        event = await inbox.next_event(timeout=15)
    assert isinstance(event, DaemonStatusReported)
    assert event.status == "ready"
    return d


async def stream_seq(bus: Bus, subject: str) -> int:
    """The stream sequence of the last message on ``subject`` (0: none)."""
    try:
        return int((await bus.js.get_last_msg(subjects.STREAM_NAME, subject)).seq or 0)
    except nats.js.errors.NotFoundError:
        return 0


def forged_report(machine_id: str, status: str = "stopping") -> bytes:
    return encode_event(
        DaemonStatusReported(
            event_id=uuid.uuid4().hex,
            machine_id=machine_id,
            status=status,  # type: ignore[arg-type]
            version="6.6.6",
            git_sha=None,
            boot_id="forged",
        )
    )


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
        await store.transition(mid, MachineStatus.ARCHIVED, "archived by the test")
    before = await store.redis.hgetall(k_machine(mid))
    conns = [c["cid"] for c in await connz(bus, user)]  # the services' own, for that user

    await refused(nats_server, user, password)

    assert await store.redis.hgetall(k_machine(mid)) == before
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


# --- a machine with valid credentials, attacking another ---------------------------------------
async def test_machine_cannot_read_another_machines_rpc(
    callout: None,
    bus: Bus,
    store: Store,
    box: SecretBox,
    spawn_daemon: SpawnDaemon,
    nats_server: NatsServer,
) -> None:
    b, b_token = await enroll(store, box)
    await boot(bus, spawn_daemon, b, b_token)
    a, a_token = await enroll(store, box)
    attacker = Attacker()
    nc = await connect_as(nats_server, a, a_token, attacker)
    stolen = [
        subjects.daemon_rpc(b),  # B's RPC: carries its .env and git credentials
        "daemon.*.rpc",
        "daemon.>",
        subjects.machine_inbox_prefix(b) + ".>",  # B's replies
        "_INBOX.>",  # the platform's replies from every daemon
        subjects.ALL_MACHINE_EVENTS,
        ">",
    ]
    # No callbacks: a message the server delivered waits in its subscription's queue.
    subs = [await nc.subscribe(subject) for subject in stolen]
    subs += [await nc.subscribe(subject, queue="q") for subject in stolen]
    own = await nc.subscribe(subjects.daemon_rpc(a))  # A may serve its own RPC subject
    await nc.flush()
    for subject in stolen:
        await attacker.violated("subscription", subject)

    # The platform talks to B, with a secret in the call and in the answer: A sees none of it.
    mc = DaemonClient(bus.nc, keys=static_key(b_token)).machine(b)
    await mc.write_file("~/.fleet/.env", "SECRET='s3cret'\n", 0o600)
    r = await mc.run("cat", ".fleet/.env")
    assert r.stdout == "SECRET='s3cret'\n"
    # The platform then sends A something: one connection's messages arrive in the order the
    # server routed them, so anything of B's routed to A is queued by the time this arrives.
    marker = b"marker-" + uuid.uuid4().hex.encode()
    await bus.nc.publish(subjects.daemon_rpc(a), marker)
    assert (await own.next_msg(timeout=10)).data == marker
    assert [s.pending_msgs for s in subs] == [0] * len(subs)
    # A's own subjects still work: the violations did not cost it its connection.
    assert nc.is_connected
    await nc.close()


async def test_machine_cannot_publish_as_another_machine_or_call_it(
    callout: None, stack: FleetClient, bus: Bus, store: Store, box: SecretBox,
    nats_server: NatsServer,
) -> None:  # fmt: skip
    inst_b = await stack.create_instance("victim")
    b = (await stack.create_machine(inst_b.id)).id
    assert (await stack.wait_for(b, {"ready", "failed"}, timeout_s=60)).status == "ready"
    a, a_token = await enroll(store, box)
    before = await store.redis.hgetall(k_machine(b))
    b_status = subjects.event(STATUS, b)
    seq_before = await stream_seq(bus, b_status)

    attacker = Attacker()
    nc = await connect_as(nats_server, a, a_token, attacker)
    async with (
        subscribed(bus.nc, subjects.machine_events(b)) as seen,
        subscribed(bus.nc, subjects.daemon_rpc(b)) as rpc_seen,
    ):
        for status in ("stopping", "ready"):  # ready with a new boot: setup would run again
            await nc.publish(b_status, forged_report(b, status))
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await nc.request(b_status, forged_report(b), timeout=1)  # via JetStream
        await nc.publish(subjects.heartbeat(b), b"{}")
        await nc.publish(subjects.event(subjects.EventKind.READY, b), b"{}")
        await nc.publish(subjects.daemon_rpc(b), b'{"jsonrpc":"2.0","id":1,"method":"x"}')
        await nc.flush()
        ready_b = subjects.event(subjects.EventKind.READY, b)
        for subject in (b_status, subjects.heartbeat(b), ready_b, subjects.daemon_rpc(b)):
            await attacker.violated("publish", subject)  # the server has judged every one
        # The services' subscribers saw none of it (B's own heartbeats may go by): a marker
        # the platform sends now comes after anything of A's that got through.
        for msg in await before_marker(bus.nc, subjects.heartbeat(b), seen):
            assert msg.data != b"{}"
            assert b"forged" not in msg.data
        assert await before_marker(bus.nc, subjects.daemon_rpc(b), rpc_seen) == []
    assert await stream_seq(bus, b_status) == seq_before
    assert await store.redis.hgetall(k_machine(b)) == before
    assert (await stack.get_machine(b)).status is MachineStatus.READY
    await nc.close()


async def test_machine_cannot_reach_the_jetstream_api(
    callout: None, bus: Bus, store: Store, box: SecretBox, nats_server: NatsServer
) -> None:
    a, a_token = await enroll(store, box)
    attacker = Attacker()
    nc = await connect_as(nats_server, a, a_token, attacker)
    stream = subjects.STREAM_NAME
    for subject in (
        "$JS.API.INFO",
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.PURGE.{stream}",
        f"$JS.API.STREAM.DELETE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        "$SYS.REQ.ACCOUNT.PING.CONNZ",
        "$SYS.REQ.SERVER.PING.CONNZ",
    ):
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await nc.request(subject, b"{}", timeout=0.5)
        await attacker.violated("publish", subject)
    # Its JetStream context is useless: no API reply ever comes.
    with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
        await nc.jetstream(timeout=0.5).stream_info(stream)
    assert (await bus.js.stream_info(stream)).config.name == stream  # still there
    await nc.close()


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

    await store.transition(mid, MachineStatus.ARCHIVED, "archived by the test")
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
    mon = await nats.connect(
        nats_server.url,
        user=auth.MONITOR_USER,
        password=auth.monitor_password,
        inbox_prefix=auth.MONITOR_INBOX_PREFIX,
        allow_reconnect=False,
        error_cb=watcher.on_error,
    )
    live: asyncio.Queue[Msg] = asyncio.Queue()

    async def on_live(msg: Msg) -> None:
        live.put_nowait(msg)

    await mon.subscribe(subjects.ALL_MACHINE_EVENTS, cb=on_live)
    await mon.flush()
    mid, token = await enroll(store, box)
    await boot(bus, spawn_daemon, mid, token)
    status = subjects.event(STATUS, mid)
    assert (await asyncio.wait_for(live.get(), 10)).subject == status
    # Stored events, read back from the stream.
    js = mon.jetstream(timeout=2)
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
        "config": {"name": durable, "filter_subject": "machine.ready.*", "ack_policy": "explicit"},
    }
    with pytest.raises(nats.errors.TimeoutError):
        await mon.request(create, json.dumps(body).encode(), timeout=0.5)
    await watcher.violated("publish", create)
    info = await bus.js.consumer_info(subjects.STREAM_NAME, durable)
    assert info.config.filter_subject == "machine.created.*"
    with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
        await js.subscribe(subjects.ALL_MACHINE_EVENTS, ordered_consumer=True)
    await mon.close()


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
