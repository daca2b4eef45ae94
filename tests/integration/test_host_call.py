"""controlplane.calls.host_call.call_host against a real nats-server and a host's ReplyServer as
the provisioner serves it (its working notices, contracts/host/rpc.py): a replica that ends
while it works on a long call is known at once (it stops telling it works), never waited out
to the call's timeout (found by the soak: a memory snapshot whose provisioner was killed after
its take hung its caller for 600 s); a slow replica that lives is waited for past that
silence; no replica at all is said at once."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from base import natsconn
from base.reply_server import ReplyServer, Working
from contracts.bus import subjects
from contracts.errors import HostUnavailable
from contracts.host import rpc as h
from contracts.rpc.jsonrpc import Dispatcher, Router, decode_result, encode_call
from controlplane.calls.host_call import call_host
from fleet.up import NatsServer

#: The notices' pace and the asker's patience, short: the rules are the platform's.
EVERY_S, SILENCE_S = 0.05, 1.0
#: A call's whole timeout: far longer than any wait the test allows.
TIMEOUT_S = 120.0


@pytest.fixture
def host() -> str:
    """A host of the test's own: a replica another test closed may linger on the server."""
    return f"test-host-{secrets.token_hex(4)}"


@pytest.fixture
async def conns(nats_server: NatsServer) -> AsyncIterator[tuple[NATS, NATS]]:
    """The asker's connection and the replica's."""
    asker = await natsconn.connect(nats_server.url, name="tests.asker")
    replica = await natsconn.connect(nats_server.url, name="tests.replica")
    yield asker, replica
    await asker.close()
    if not replica.is_closed:
        await replica.close()


def replica(nc: NATS, host: str, release: asyncio.Event, asked: asyncio.Event) -> ReplyServer:
    """A host replica whose ``host.daemonRuns`` answers once ``release`` is set."""

    async def daemon_runs(_: h.HostMachineParams, __: None) -> h.DaemonRunsResult:
        asked.set()
        await release.wait()
        return h.DaemonRunsResult(runs=True)

    router: Router[None] = Router()
    router.register(h.DAEMON_RUNS, daemon_runs)
    dispatcher = Dispatcher([h.DAEMON_RUNS], router)  # the one this replica needs

    async def handle(msg: Msg) -> bytes | None:
        return await dispatcher.handle(msg.data, None)

    working = Working(EVERY_S, h.WORKING_HEADER, h.WORKING_ASK_HEADER)
    return ReplyServer(nc, subjects.host_rpc(host), handle, queue=subjects.HOST_RPC_QUEUE,
                       working=working)  # fmt: skip


async def ask(nc: NATS, host: str) -> h.DaemonRunsResult:
    params = h.HostMachineParams(machine_id="m-0123456789abcdef")
    return await call_host(nc, host, h.DAEMON_RUNS, params, TIMEOUT_S, request_id=1,
                           silence_s=SILENCE_S)  # fmt: skip


@contextlib.asynccontextmanager
async def asked(conns: tuple[NATS, NATS],
                host: str) -> AsyncIterator[tuple[asyncio.Task[Any], asyncio.Event]]:  # fmt: skip
    """A call under way on a replica that works on it until the event yielded is set."""
    asker, own = conns
    release, taken = asyncio.Event(), asyncio.Event()
    async with replica(own, host, release, taken):
        await own.flush()  # its subscription on the server before anyone asks
        call = asyncio.create_task(ask(asker, host))
        await asyncio.wait_for(taken.wait(), 30)
        try:
            yield call, release
        finally:
            release.set()


async def test_a_replica_that_ends_while_it_works_is_said_at_once(
    conns: tuple[NATS, NATS], host: str
) -> None:
    async with asked(conns, host) as (call, _):
        began = time.monotonic()
        await conns[1].close()  # as a kill: no answer, and no more notices
        with pytest.raises(HostUnavailable, match="stopped answering while it worked") as got:
            await asyncio.wait_for(call, TIMEOUT_S / 2)
        assert got.value.data == {"hostId": host, "outcome": "unknown"}
        assert time.monotonic() - began < TIMEOUT_S / 2  # known by its silence, not the timeout


async def test_a_slow_replica_that_lives_is_waited_for_past_the_silence(
    conns: tuple[NATS, NATS], host: str
) -> None:
    async with asked(conns, host) as (call, release):
        # Longer than the asker's patience: only the notices keep it waiting.
        done, _ = await asyncio.wait({call}, timeout=SILENCE_S * 3)
        assert not done, call.result()
        release.set()
        assert (await asyncio.wait_for(call, 30)).runs


async def test_no_replica_at_all_is_said_at_once(conns: tuple[NATS, NATS], host: str) -> None:
    asker, _ = conns
    with pytest.raises(HostUnavailable, match="no provisioner of host"):
        await asyncio.wait_for(ask(asker, host), TIMEOUT_S / 2)


async def test_an_asker_that_did_not_ask_for_notices_gets_its_answer_alone(
    conns: tuple[NATS, NATS], host: str
) -> None:
    """An asker of an older release (a plain request): its first message is the answer."""
    asker, own = conns
    release, taken = asyncio.Event(), asyncio.Event()
    async with replica(own, host, release, taken):
        await own.flush()
        body = encode_call(h.DAEMON_RUNS, h.HostMachineParams(machine_id="m-0123456789abcdef"), 1)
        call = asyncio.create_task(asker.request(subjects.host_rpc(host), body, timeout=30))
        await asyncio.wait_for(taken.wait(), 30)
        await own.flush()  # a notice, were one sent, is on the server before the answer
        release.set()
        answer = await asyncio.wait_for(call, 30)
    assert decode_result(h.DAEMON_RUNS, answer.data).runs
