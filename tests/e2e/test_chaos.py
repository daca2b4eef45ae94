"""Chaos: services SIGKILLed and NATS restarted while 30 machines move through the pipeline."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import nats
import pytest

from contracts.bus import subjects
from contracts.bus.consumers import Durable, host_durable
from contracts.status import MachineStatus
from fleet.client import FleetClient
from fleet.up import NatsServer, ValkeyServer
from tests.conftest import CloneLog
from tests.diagnose import wait_all
from tests.e2e.conftest import start_fleet_up
from tests.waiters import wait_until

# The chaos tier: `./run test` runs it after the rest (docs/development.md).
pytestmark = pytest.mark.chaos

MACHINES = 30
#: Alone it takes ~10 s; with both cores loaded by other work, several times that. The final
#: wait gives up well before pytest's timeout, so the failure says what each machine waited on.
WAIT_S = 150
#: The archive durable is per host: `fleet up`'s one host is named after this one.
DURABLES = ("provisioner", host_durable(Durable.PROVISIONER_ARCHIVE, socket.gethostname()),
            "setup_pusher", "prober", "prober-boot")  # fmt: skip


def service_pid(parent: int, name: str) -> int:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and f"services.{name}".encode() in cmdline:
            return int(entry.name)
    raise AssertionError(f"no {name} under pid {parent}")


@pytest.mark.timeout(240)
async def test_chaos(tmp_path: Path, own_nats_server: NatsServer,
                     own_redis_server: ValkeyServer, bare_repo: Path,
                     clone_log: CloneLog) -> None:  # fmt: skip
    """On servers of its own: it restarts NATS, and `fleet up` keeps its keys under fleet:."""
    nats_server, redis_server = own_nats_server, own_redis_server
    up = start_fleet_up(
        tmp_path / "data", "--nats-url", nats_server.url,
        "--redis-url", redis_server.url,
        # The default ack wait (4 s): work a killed service held is redelivered within seconds.
        env={"FLEET_LOG_LEVEL": "warning", "PATH": os.environ["PATH"],
             "FLEET_SANDBOX_SHARE": f"{bare_repo}:{tmp_path / 'shim'}"},
    )  # fmt: skip
    started = time.monotonic()
    try:
        async with FleetClient(up.url, up.token, timeout_s=60) as fleet:
            insts = await asyncio.gather(*(fleet.create_instance(f"c{n}") for n in range(MACHINES)))
            await asyncio.gather(
                *(fleet.add_repo(i.id, str(bare_repo), "feature", "src/app") for i in insts)
            )
            third = MACHINES // 3
            # Wave 1, then the provisioner dies with work in hand; wave 2 arrives while it is
            # down or restarting.
            machines = [await fleet.create_machine(i.id) for i in insts[:third]]
            os.kill(service_pid(up.proc.pid, "provisioner"), signal.SIGKILL)
            machines += [await fleet.create_machine(i.id) for i in insts[third : 2 * third]]

            async def some_ready() -> bool:
                done = [m for m in await fleet.list_machines() if m.status is MachineStatus.READY]
                return len(done) >= 3

            await wait_until(some_ready, timeout=60)
            # The setup pusher dies mid-batch; wave 3 arrives; then NATS restarts under it all.
            os.kill(service_pid(up.proc.pid, "setup_pusher"), signal.SIGKILL)
            machines += [await fleet.create_machine(i.id) for i in insts[2 * third :]]
            nats_server.stop()
            nats_server.start()

            # Under the pytest timeout (set below), so a hang ends with what each machine was
            # waiting on, not with pytest's stack dump.
            final = await wait_all(fleet, [m.id for m in machines], {"ready", "failed"},
                                   timeout_s=WAIT_S, nats_url=nats_server.url)  # fmt: skip
            took = time.monotonic() - started
        assert [m.status for m in final] == [MachineStatus.READY] * MACHINES, [
            m.status_reason for m in final if m.status is not MachineStatus.READY
        ]
        homes = clone_log.homes()
        assert len(homes) == MACHINES, f"{len(homes)} clones for {MACHINES} machines"
        assert len(set(homes)) == MACHINES  # exactly once each

        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()

        async def all_acked() -> bool:
            # The boot watchdog re-checks a booting machine a few seconds later (a delayed
            # nak): those events are acked at their next look, so wait for that.
            for durable in DURABLES:
                info = await js.consumer_info(subjects.STREAM_NAME, durable)
                if (info.num_pending, info.num_ack_pending) != (0, 0):
                    return False
            return True

        await wait_until(all_acked, timeout=30)
        redelivered = {}
        for durable in DURABLES:
            info = await js.consumer_info(subjects.STREAM_NAME, durable)
            stream = await js.stream_info(
                subjects.STREAM_NAME, subjects_filter=info.config.filter_subject
            )
            distinct = sum((stream.state.subjects or {}).values())
            redelivered[durable] = info.delivered.consumer_seq - distinct
        await nc.close()
        print(f"\nchaos: {MACHINES} machines ready in {took:.1f}s; redelivered: {redelivered}")
    finally:
        up.stop()
    leftovers = [
        p for p in Path("/proc").iterdir() if p.name.isdigit() and _home_under(p, up.data_dir)
    ]
    assert leftovers == [], "daemons outlived fleet up (a machine got two daemons?):\n" + "\n".join(
        _describe(p) for p in leftovers
    )


def _describe(proc: Path) -> str:
    """pid, state, parent, process group and command line, for a failure message."""
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return f"{proc.name}: gone"
    return f"{proc.name}: state {fields[0]} ppid {fields[1]} pgid {fields[2]}: {argv[:200]}"


def _home_under(proc: Path, data_dir: Path) -> bool:
    try:
        environ = (proc / "environ").read_bytes().split(b"\0")
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    home = f"HOME={data_dir}".encode()
    return state != "Z" and any(v.startswith(home) for v in environ)
