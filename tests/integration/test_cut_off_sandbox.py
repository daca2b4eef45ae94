"""A provisioner that dies between starting a local machine's sandbox and giving it its network
leaves a sandbox with no way out: bwrap, its block pipe closed, goes on, and its daemon can never
reach NATS. The redelivered machine.created must start it again, not take it for a machine that
is already up (found by the chaos test on `fleet up --ha`: 2 of 50 machines never booted)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from fleet.up import NatsServer
from providers.local.processes import pid_alive
from providers.local.provider import LocalProvider
from providers.local.supervision import CUT_OFF, exit_records, stop_local
from providers.sandbox import has_pasta, stop_pasta
from tests.waiters import wait_until


async def test_a_sandbox_cut_off_from_its_network_is_started_again(
    tmp_path: Path, nats_server: NatsServer
) -> None:
    data = tmp_path / "data"
    local = LocalProvider(data_dir=data, nats_url=nats_server.url, environ=os.environ)
    mid = f"m-{secrets.token_hex(8)}"
    try:
        first = int((await local.start(mid, "token")).removeprefix("local:"))
        assert has_pasta(mid)
        # What a provisioner SIGKILLed before the hand-over leaves: the sandbox, no pasta.
        stop_pasta(mid)
        await wait_until(lambda: not has_pasta(mid))
        assert pid_alive(first)

        again = int((await local.start(mid, "token")).removeprefix("local:"))
        assert again != first
        assert not pid_alive(first)
        assert has_pasta(mid)
        ended = [(r.get("pid"), r.get("endedBy"), r.get("code")) for r in exit_records(data)]
        assert ended == [(first, CUT_OFF, None)]  # not counted as a daemon SIGKILLed
        # A machine that has its network is left alone by a redelivery.
        assert await local.start(mid, "token") == f"local:{again}"
    finally:
        stop_local(local.machine_dir(mid), mid, grace_s=1.0)
    await wait_until(lambda: not has_pasta(mid))
