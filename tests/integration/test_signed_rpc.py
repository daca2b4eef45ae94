"""A daemon accepts RPC only when signed by the platform, once, within its time window."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from nats.aio.msg import Msg

from contracts.bus import subjects
from contracts.daemon.signing import (
    H_ID,
    H_SIG,
    MAX_TTL_S,
    TTL_MARGIN_S,
    request_ttl,
    sign,
    sign_reply,
    signing_key,
    verify_reply,
)
from contracts.errors import ReplyForged
from contracts.ids import new_machine_id
from contracts.rpc.jsonrpc import encode_request
from controlplane.bus import Bus
from controlplane.calls.daemon_client import DaemonClient, static_key
from tests.conftest import MACHINE_TOKEN, SpawnDaemon
from tests.integration.test_daemon import boot

KEY = signing_key(MACHINE_TOKEN)


async def ask(bus: Bus, machine_id: str, body: bytes, headers: dict[str, str] | None) -> dict:  # type: ignore[type-arg]
    reply = await bus.nc.request(subjects.daemon_rpc(machine_id), body, timeout=5,
                                 headers=headers)  # fmt: skip
    answer: dict = json.loads(reply.data)  # type: ignore[type-arg]
    return answer


def write(path: str) -> bytes:
    return encode_request("tool.writeFile", {"path": path, "content": "pwned"}, 1)


async def test_a_replayed_request_is_refused(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    d, _ = await boot(bus, spawn_daemon)
    body = write("once.txt")
    headers = sign(KEY, d.machine_id, body)
    assert "result" in await ask(bus, d.machine_id, body, headers)
    (d.home / "once.txt").unlink()
    again = await ask(bus, d.machine_id, body, headers)
    assert again["error"]["code"] == 1102
    assert not (d.home / "once.txt").exists()


@pytest.mark.parametrize(("issued_delta", "ttl"), [(-100.0, 30.0), (+300.0, 30.0), (0.0, 99999.0)])
async def test_requests_outside_their_window_are_refused(
    bus: Bus, spawn_daemon: SpawnDaemon, issued_delta: float, ttl: float
) -> None:
    d, _ = await boot(bus, spawn_daemon)
    body = write("late.txt")
    headers = sign(KEY, d.machine_id, body, issued_at=time.time() + issued_delta, ttl_s=ttl)
    assert (await ask(bus, d.machine_id, body, headers))["error"]["code"] == 1101
    assert not (d.home / "late.txt").exists()


async def test_unsigned_forged_tampered_and_misdirected_requests(
    bus: Bus, spawn_daemon: SpawnDaemon
) -> None:
    a, _ = await boot(bus, spawn_daemon)
    b, _ = await boot(bus, spawn_daemon)
    body = write("x.txt")
    forged = sign(signing_key("a guessed token"), a.machine_id, body)
    tampered = sign(KEY, a.machine_id, write("innocent.txt"))
    for_b = sign(KEY, b.machine_id, body)  # a valid signature, but for machine B
    wrong_sig = {**sign(KEY, a.machine_id, body), H_SIG: "0" * 64}
    for headers in (None, forged, tampered, for_b, wrong_sig):
        answer = await ask(bus, a.machine_id, body, headers)
        assert answer["error"]["code"] == 1001, answer
    assert not (a.home / "x.txt").exists()
    assert not (a.home / "innocent.txt").exists()


async def test_a_request_captured_before_a_restart_is_refused_after_it(
    bus: Bus, spawn_daemon: SpawnDaemon
) -> None:
    """Issue 13: the replay guard is in memory; a daemon refuses what was issued before it
    started (less FLEET_BOOT_SKEW_S, 0 here so the test does not depend on timing)."""
    d, _ = await boot(bus, spawn_daemon, FLEET_BOOT_SKEW_S="0")
    body = write("again.txt")
    captured = sign(KEY, d.machine_id, body)  # a 30 s window, still open after the restart
    assert "result" in await ask(bus, d.machine_id, body, captured)
    (d.home / "again.txt").unlink()
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.wait(timeout=10)
    await boot(bus, spawn_daemon, d.machine_id, FLEET_BOOT_SKEW_S="0")
    again = await ask(bus, d.machine_id, body, captured)
    assert again["error"]["code"] == 1101
    assert "before this daemon started" in again["error"]["message"]
    assert not (d.home / "again.txt").exists()
    fresh = sign(KEY, d.machine_id, body)  # and the new daemon serves new requests
    assert "result" in await ask(bus, d.machine_id, body, fresh)


def test_the_longest_window_is_a_call_timeout_plus_a_margin() -> None:
    assert request_ttl(10.0) == 10.0 + TTL_MARGIN_S
    assert request_ttl(3600.0) == MAX_TTL_S < 120  # a long command needs no long window


async def test_answers_are_signed_by_the_daemon(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    d, mc = await boot(bus, spawn_daemon)
    body = write("signed.txt")
    headers = sign(KEY, d.machine_id, body)
    reply = await bus.nc.request(subjects.daemon_rpc(d.machine_id), body, timeout=5,
                                 headers=headers)  # fmt: skip
    verify_reply(KEY, d.machine_id, headers[H_ID], reply.data, reply.headers)
    with pytest.raises(ReplyForged):  # bound to its request: no use as another one's answer
        verify_reply(KEY, d.machine_id, "another-id", reply.data, reply.headers)
    assert (await mc.health()).ok  # the client checks every answer


@pytest.mark.parametrize("signed_with", [None, "a guessed token", "copied"])
async def test_an_impostor_answering_on_the_rpc_subject_is_not_believed(
    bus: Bus, spawn_daemon: SpawnDaemon, signed_with: str | None
) -> None:
    """Issue 13: whoever answered on daemon.<id>.rpc was believed."""
    machine_id = new_machine_id()
    real = await boot(bus, spawn_daemon)  # a genuine answer to copy a signature from
    genuine = await bus.nc.request(
        subjects.daemon_rpc(real[0].machine_id), write("x.txt"), timeout=5,
        headers=sign(KEY, real[0].machine_id, write("x.txt")),
    )  # fmt: skip
    lie = b'{"jsonrpc":"2.0","id":1,"result":{"ok":true,"uptimeS":1.0}}'

    async def impostor(msg: Msg) -> None:
        headers = None
        if signed_with == "copied":
            headers = dict(genuine.headers or {})
        elif signed_with is not None:
            headers = sign_reply(signing_key(signed_with), machine_id, "", lie)
        await bus.nc.publish(msg.reply, lie, headers=headers)

    sub = await bus.nc.subscribe(subjects.daemon_rpc(machine_id), cb=impostor)
    try:
        with pytest.raises(ReplyForged, match="not believed"):
            await DaemonClient(bus.nc, keys=static_key(MACHINE_TOKEN)).machine(machine_id).health()
    finally:
        await sub.unsubscribe()
