"""A machine with valid credentials attacks another: it can neither read its traffic, nor
publish or call as it, nor reach the JetStream API."""

from __future__ import annotations

import asyncio
import uuid

import nats.errors
import pytest

from contracts.bus import subjects
from contracts.bus.consumers import Durable
from contracts.bus.events import MachineFailed, encode_event
from contracts.daemon import rpc as d, streams
from contracts.ids import new_event_id
from contracts.status import MachineStatus
from controlplane.bus import Bus
from controlplane.calls.byte_stream_join import join
from controlplane.calls.daemon_client import DaemonClient, static_key
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from fleet.up import NatsServer
from tests.conftest import SpawnDaemon
from tests.integration.nats_auth.helpers import (
    STATUS,
    Attacker,
    boot,
    connect_as,
    enroll,
    forged_report,
    stream_seq,
)
from tests.waiters import before_marker, subscribed, wait_until


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
    before = await store.redis.hgetall(store.keys.k_machine(b))
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
    assert await store.redis.hgetall(store.keys.k_machine(b)) == before
    assert (await stack.get_machine(b)).status is MachineStatus.READY
    await nc.close()


async def test_machine_cannot_reach_the_jetstream_api(
    callout: None, bus: Bus, store: Store, box: SecretBox, nats_server: NatsServer
) -> None:
    a, a_token = await enroll(store, box)
    attacker = Attacker()
    nc = await connect_as(nats_server, a, a_token, attacker)
    stream = subjects.STREAM_NAME
    asked = (
        "$JS.API.INFO",
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.PURGE.{stream}",
        f"$JS.API.STREAM.DELETE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        "$SYS.REQ.ACCOUNT.PING.CONNZ",
        "$SYS.REQ.SERVER.PING.CONNZ",
    )

    async def unanswered(subject: str) -> None:
        with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
            await nc.request(subject, b"{}", timeout=0.5)

    # All at once: each waits out its timeout, and they need not wait one after another.
    await asyncio.gather(*(unanswered(subject) for subject in asked))
    for subject in asked:
        await attacker.violated("publish", subject)
    # Its JetStream context is useless: no API reply ever comes.
    with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
        await nc.jetstream(timeout=0.5).stream_info(stream)
    assert (await bus.js.stream_info(stream)).config.name == stream  # still there
    await nc.close()


async def test_machine_cannot_speak_about_another_machine_on_its_own_subject(
    callout: None, stack: FleetClient, bus: Bus, store: Store, box: SecretBox,
    nats_server: NatsServer,
) -> None:  # fmt: skip
    """Issue 13's forged report: A publishes where NATS lets it (its own status subject) a
    payload that names B, or that is of another kind. The stream stores it; the stages must
    not believe it."""
    inst_b = await stack.create_instance("victim")
    b = (await stack.create_machine(inst_b.id)).id
    assert (await stack.wait_for(b, {"ready", "failed"}, timeout_s=60)).status == "ready"
    before = await store.redis.hgetall(store.keys.k_machine(b))
    a, a_token = await enroll(store, box)
    nc = await connect_as(nats_server, a, a_token)
    own = subjects.event(STATUS, a)
    failed = MachineFailed(event_id=new_event_id(), machine_id=b, stage="setup", reason="forged")
    for payload in (forged_report(b, "ready"), forged_report(b, "stopping"),
                    encode_event(failed)):  # fmt: skip
        await nc.publish(own, payload)
    await nc.flush()

    async def all_stored() -> bool:  # the permissions allow the subject: only the payload lies
        return await stream_seq(bus, own) > 0 and (
            await bus.js.get_last_msg(subjects.STREAM_NAME, own)
        ).data == encode_event(failed)

    await wait_until(all_stored, timeout=10)
    last = await stream_seq(bus, own)

    async def setup_pusher_settled() -> bool:
        info = await bus.js.consumer_info(subjects.STREAM_NAME, Durable.SETUP_PUSHER.value)
        return (info.delivered.stream_seq or 0) >= last and info.num_ack_pending == 0

    await wait_until(setup_pusher_settled, timeout=15)
    after = await store.redis.hgetall(store.keys.k_machine(b))
    assert after == before  # version, SHA, status untouched
    assert (await stack.get_machine(b)).status is MachineStatus.READY
    await nc.close()


async def test_a_machine_flooding_its_own_subject_cannot_fill_the_stream(
    callout: None, settings: Settings, bus: Bus, store: Store, box: SecretBox,
    nats_server: NatsServer,
) -> None:  # fmt: skip
    """Issue 13: a machine wrote 1,000 x 64 KB events in half a second, all kept for 30 days.
    Now the stream keeps its newest events per subject and refuses oversized ones."""
    a, a_token = await enroll(store, box)
    nc = await connect_as(nats_server, a, a_token)
    status = subjects.event(STATUS, a)
    big = b"x" * (settings.stream_max_msg_size + 1)
    flood = settings.stream_max_msgs_per_subject * 3
    for n in range(flood):
        await nc.publish(status, big if n % 2 else forged_report(a))
    marker = forged_report(a, "ready")
    await nc.publish(status, marker)
    await nc.flush()

    async def marker_stored() -> bool:
        return (await bus.js.get_last_msg(subjects.STREAM_NAME, status)).data == marker

    await wait_until(marker_stored, timeout=10)
    info = await bus.js.stream_info(subjects.STREAM_NAME, subjects_filter=status)
    assert (info.state.subjects or {})[status] == settings.stream_max_msgs_per_subject
    assert info.state.bytes < settings.stream_max_msgs_per_subject * 1024  # no big one kept
    await nc.close()


async def test_machine_cannot_write_into_another_machines_output_stream(
    callout: None, bus: Bus, store: Store, box: SecretBox, nats_server: NatsServer
) -> None:
    """Streamed exec output: A may publish on its own output subjects only. A chunk forged
    into B's stream would reach B's user as if B's command printed it."""
    a, a_token = await enroll(store, box)
    b, _ = await enroll(store, box)
    attacker = Attacker()
    nc = await connect_as(nats_server, a, a_token, attacker)
    stream_id = uuid.uuid4().hex
    b_out, a_out = subjects.exec_output(b, stream_id), subjects.exec_output(a, stream_id)
    async with subscribed(bus.nc, b_out) as b_seen, subscribed(bus.nc, a_out) as a_seen:
        await nc.publish(b_out, b"forged")
        await nc.publish(subjects.exec_output(b, "*"), b"forged")
        await nc.publish(a_out, b"own")
        await nc.flush()
        await attacker.violated("publish", b_out)
        assert await before_marker(bus.nc, b_out, b_seen) == []
        assert [m.data for m in await before_marker(bus.nc, a_out, a_seen)] == [b"own"]
    assert attacker.violations("publish", a_out) == []
    await nc.close()


async def test_machine_cannot_read_or_write_another_machines_byte_streams(
    callout: None, bus: Bus, store: Store, box: SecretBox, spawn_daemon: SpawnDaemon,
    nats_server: NatsServer,
) -> None:  # fmt: skip
    """Terminals, files and tunnels: B's stream carries its user's keystrokes and files. A may
    neither read B's sides, nor forge B's output, nor feed B (or itself) platform input."""
    b, b_token = await enroll(store, box)
    await boot(bus, spawn_daemon, b, b_token)
    opened = await DaemonClient(bus.nc, keys=static_key(b_token)).call(
        b, d.EXEC_PIPE, d.ExecPipeParams(command=["cat"])
    )
    sid = opened.stream_id
    a, a_token = await enroll(store, box)
    attacker = Attacker()
    nc = await connect_as(nats_server, a, a_token, attacker)
    async with await join(bus.nc, b, sid) as stream:
        for subject in (subjects.stream_to_machine(b, "*"), subjects.stream_from_machine(b, "*"),
                        subjects.stream_to_machine(b, sid)):  # fmt: skip
            await nc.subscribe(subject)
            await attacker.violated("subscription", subject)
        forged = [
            subjects.stream_from_machine(b, sid),  # B's output, as if B's command printed it
            subjects.stream_to_machine(b, sid),  # B's input, as if its user typed it
            subjects.stream_to_machine(a, sid),  # even its own input is the platform's to send
        ]
        for subject in forged:
            await nc.publish(subject, streams.encode_data(0, b"rm -rf ~\n"))
        await nc.flush()
        for subject in forged:
            await attacker.violated("publish", subject)
        # B's real stream, under the real permissions, is whole and untouched.
        await stream.send(b"hello\n")
        await stream.end()
        assert b"".join([c async for c in stream]) == b"hello\n"
        assert stream.end_code == 0
    await nc.close()
