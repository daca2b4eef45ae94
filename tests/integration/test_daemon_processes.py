"""Background processes through a real daemon's RPC: restart on a new .env, re-adoption."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from base import procinfo
from contracts.daemon import rpc as d
from contracts.errors import Conflict, NotFound
from contracts.rpc.jsonrpc import NoParams
from controlplane.bus import Bus
from controlplane.calls.daemon_client import DaemonClient
from tests.conftest import SpawnDaemon
from tests.integration.test_daemon import KEY, boot
from tests.waiters import wait_until

RECORD_FOO = ["sh", "-c", 'echo "${FOO:-unset}" >> seen.txt; exec sleep 300']


def seen(home: Path) -> list[str]:
    path = home / "seen.txt"
    return path.read_text().split() if path.exists() else []


async def test_on_env_change_restarts_with_the_new_env(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    proc, mc = await boot(bus, spawn_daemon)
    client = DaemonClient(bus.nc, keys=KEY)
    await mc.write_file("~/.fleet/.env", "FOO='one'\n", 0o600)
    start = d.ProcessStartParams(command=RECORD_FOO, tag="app", restart="on-env-change")
    first: d.ProcessInfo = await client.call(proc.machine_id, d.PROCESS_START, start)
    await wait_until(lambda: seen(proc.home) == ["one"])

    with pytest.raises(Conflict, match="app"):
        await client.call(proc.machine_id, d.PROCESS_START, start)

    await mc.write_file("~/.fleet/.env", "FOO='two'\n", 0o600)  # as the platform pushes it
    await wait_until(lambda: seen(proc.home) == ["one", "two"])
    listed: d.ProcessList = await client.call(proc.machine_id, d.PROCESS_LIST, NoParams())
    (info,) = listed.processes
    assert (info.tag, info.state, info.restarts) == ("app", "running", 1)
    assert info.pid != first.pid
    assert not procinfo.is_alive(first.pid, None)

    logs: d.ProcessLogs = await client.call(
        proc.machine_id, d.PROCESS_LOGS, d.ProcessLogsParams(tag="app", tail=5)
    )
    assert logs.pid == info.pid
    killed: d.ProcessInfo = await client.call(
        proc.machine_id, d.PROCESS_KILL, d.ProcessRef(tag="app")
    )
    assert killed.state == "exited"
    assert not procinfo.is_alive(info.pid, None)
    with pytest.raises(NotFound):
        await client.call(proc.machine_id, d.PROCESS_KILL, d.ProcessRef(pid=info.pid + 100000))


async def test_a_restarted_daemon_re_adopts_its_processes(
    bus: Bus, spawn_daemon: SpawnDaemon
) -> None:
    proc, _ = await boot(bus, spawn_daemon)
    client = DaemonClient(bus.nc, keys=KEY)
    start = d.ProcessStartParams(command=["sleep", "300"], tag="keep", restart="always")
    info: d.ProcessInfo = await client.call(proc.machine_id, d.PROCESS_START, start)
    proc.proc.send_signal(signal.SIGKILL)  # the daemon dies; the process does not
    proc.proc.wait()
    assert procinfo.is_alive(info.pid, None)

    again, _ = await boot(bus, spawn_daemon, machine_id=proc.machine_id)
    listed: d.ProcessList = await client.call(again.machine_id, d.PROCESS_LIST, NoParams())
    assert [(p.pid, p.tag, p.state) for p in listed.processes] == [(info.pid, "keep", "running")]
    # "always": the adopted process is still supervised, and restarted when it dies.
    os.kill(info.pid, signal.SIGKILL)

    async def restarted() -> bool:
        now: d.ProcessList = await client.call(again.machine_id, d.PROCESS_LIST, NoParams())
        return any(p.tag == "keep" and p.pid != info.pid and p.state == "running"
                   for p in now.processes)  # fmt: skip

    await wait_until(restarted, timeout=15)


async def test_a_no_op_push_restarts_nothing(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    """The same .env written again (a new inode and mtime, the same bytes) is not a change.
    The positive signal: the next real change restarts the process exactly once more."""
    proc, mc = await boot(bus, spawn_daemon)
    client = DaemonClient(bus.nc, keys=KEY)
    await mc.write_file("~/.fleet/.env", "FOO='one'\n", 0o600)
    start = d.ProcessStartParams(command=RECORD_FOO, tag="app", restart="on-env-change")
    await client.call(proc.machine_id, d.PROCESS_START, start)
    await wait_until(lambda: seen(proc.home) == ["one"])
    await mc.write_file("~/.fleet/.env", "FOO='one'\n", 0o600)  # a no-op push
    await wait_until(lambda: "process.env_unchanged" in proc.output())  # the watcher saw it
    await mc.write_file("~/.fleet/.env", "FOO='two'\n", 0o600)
    await wait_until(lambda: "two" in seen(proc.home))
    assert seen(proc.home) == ["one", "two"]
    listed: d.ProcessList = await client.call(proc.machine_id, d.PROCESS_LIST, NoParams())
    assert [p.restarts for p in listed.processes] == [1]
