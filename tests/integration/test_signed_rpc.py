"""A daemon accepts RPC only when signed by the platform, once, within its time window."""

from __future__ import annotations

import json
import time

import pytest

from contracts import subjects
from contracts.jsonrpc import encode_request
from contracts.signing import H_SIG, sign, signing_key
from services.common.bus import Bus
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
