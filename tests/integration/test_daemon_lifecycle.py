"""The daemon's life as a real process: state file, lock, control port, status/stop, doctor."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from base import procinfo
from base.lockfile import DaemonLock, holder_pid, read_lock
from contracts.bus import subjects
from contracts.bus.events import DaemonStatusReported
from contracts.daemon.rpc import (
    EXEC_COMMAND,
    PROCESS_LIST,
    PROCESS_START,
    SELF_UPDATE,
    ExecCommandParams,
    ProcessInfo,
    ProcessList,
    ProcessStartParams,
    SelfUpdateParams,
)
from contracts.errors import NotFound
from contracts.rpc.jsonrpc import NoParams
from controlplane.bus import Bus
from controlplane.calls.daemon_client import DaemonClient
from daemon.__main__ import main as daemon_main
from daemon.supervision.control import ControlUnavailable, control_request
from daemon.supervision.state import load_state, state_path
from fleet.up import NatsServer
from providers.code import install_code
from providers.local.supervision import STOP_GRACE_S
from tests.conftest import SpawnDaemon
from tests.integration.test_daemon import KEY, boot
from tests.integration.test_refresh import code_repo
from tests.waiters import subscribed, wait_until


def fleet_daemon(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "--home", str(home), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def state_of(home: Path) -> str:
    state = load_state(home)
    return state.state if state else "absent"


async def test_state_file_across_start_crash_and_stop(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    d, _ = await boot(bus, spawn_daemon)
    await wait_until(lambda: state_of(d.home) == "running")
    path = state_path(d.home)
    assert path.stat().st_mode & 0o777 == 0o600
    state = load_state(d.home)
    assert state is not None
    assert (state.pid, state.machine_id, state.version) == (d.proc.pid, d.machine_id, "0.1.0")
    assert state.control_port
    assert state.start_ticks == procinfo.start_ticks(d.proc.pid)
    await wait_until(lambda: (s := load_state(d.home)) is not None and s.last_heartbeat is not None)

    # crash: SIGKILL cannot be recorded by the daemon; status reports it as crashed
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    assert state_of(d.home) == "running"  # the file is kept, as it was
    out = fleet_daemon(d.home, "status", "--json")
    assert out.returncode == 3, out.stdout + out.stderr
    shown = json.loads(out.stdout)
    assert shown["state"] == "crashed"
    assert f"pid {d.proc.pid}" in shown["stateReason"]

    # a new daemon takes over the dead one's lock and says what happened before it
    d2, _ = await boot(bus, spawn_daemon, machine_id=d.machine_id)
    await wait_until(lambda: state_of(d.home) == "running")
    state = load_state(d.home)
    assert state is not None
    assert state.pid == d2.proc.pid
    assert state.previous is not None
    assert state.previous.startswith(f"pid {d.proc.pid} crashed")

    # stop: through the control port; the file stays, saying stopped and why
    out = fleet_daemon(d.home, "stop")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "control port" in out.stdout
    assert d2.proc.wait(timeout=15) == 0
    state = load_state(d.home)
    assert state is not None
    assert state.state == "stopped"
    assert "control port" in state.state_reason
    assert not (d.home / ".fleet" / "daemon.lock").exists()
    assert fleet_daemon(d.home, "status").returncode == 3


async def test_sigterm_is_recorded_as_stopped(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    d, _ = await boot(bus, spawn_daemon)
    await wait_until(lambda: state_of(d.home) == "running")
    d.proc.send_signal(signal.SIGTERM)
    assert d.proc.wait(timeout=15) == 0
    state = load_state(d.home)
    assert state is not None
    assert (state.state, state.state_reason) == ("stopped", "SIGTERM")


def test_corrupt_state_file_is_set_aside_with_a_warning(tmp_path: Path) -> None:
    path = state_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text('{"pid": 12, "state": "runn')
    assert load_state(tmp_path) is None
    assert not path.exists()
    assert path.with_name(path.name + ".corrupt").read_text().startswith('{"pid": 12')


@pytest.mark.parametrize("command", ["status", "doctor", "stop"])
def test_inspection_commands_leave_a_corrupt_state_file_where_it_is(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = state_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text('{"pid": 12, "state": "runn')
    with pytest.raises(SystemExit):
        daemon_main(["--home", str(tmp_path), command])
    assert path.read_text() == '{"pid": 12, "state": "runn'  # untouched
    assert not path.with_name(path.name + ".corrupt").exists()
    assert "is corrupt" in capsys.readouterr().out


async def test_a_second_daemon_refuses_and_says_who_holds_the_lock(
    bus: Bus, spawn_daemon: SpawnDaemon
) -> None:
    d, _ = await boot(bus, spawn_daemon)
    second = spawn_daemon(d.machine_id)
    assert second.proc.wait(timeout=30) == 3
    assert f"pid {d.proc.pid}" in second.output()
    assert read_lock(d.home / ".fleet" / "daemon.lock")[0] == d.proc.pid


def test_a_lock_left_by_a_dead_pid_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    path = tmp_path / ".fleet" / "daemon.lock"
    path.parent.mkdir(parents=True)
    path.write_text(f"{dead.pid} 1\n")
    lock = DaemonLock(tmp_path)
    lock.acquire()
    assert read_lock(path) == (os.getpid(), procinfo.start_ticks(os.getpid()))
    lock.release()
    lock.release()  # twice is fine
    assert not path.exists()


async def test_control_port_needs_the_local_secret(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    d, _ = await boot(bus, spawn_daemon)
    await wait_until(lambda: state_of(d.home) == "running")
    state = load_state(d.home)
    assert state is not None
    assert state.control_port
    status = control_request(d.home, state.control_port, "GET", "/status")
    assert status["state"] == "running"
    assert status["pid"] == d.proc.pid
    reader, writer = await asyncio.open_connection("127.0.0.1", state.control_port)
    writer.write(b"POST /stop HTTP/1.1\r\nAuthorization: Bearer guess\r\n\r\n")
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 401")
    assert d.proc.poll() is None  # still running
    (d.home / ".fleet" / "daemon.secret").write_text("wrong")
    with pytest.raises(ControlUnavailable, match="401"):
        control_request(d.home, state.control_port, "GET", "/status")


async def test_stop_falls_back_to_sigterm(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    d, _ = await boot(bus, spawn_daemon)
    await wait_until(lambda: state_of(d.home) == "running")
    (d.home / ".fleet" / "daemon.secret").unlink()  # the control port cannot be used
    out = fleet_daemon(d.home, "stop")
    assert out.returncode == 0, out.stdout
    assert "SIGTERM" in out.stdout
    assert d.proc.wait(timeout=15) == 0


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A process the daemon did not start, and must never touch."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


async def test_doctor_finds_and_cleans_a_runaway(
    bus: Bus, spawn_daemon: SpawnDaemon, stranger: subprocess.Popen[bytes]
) -> None:
    d, _ = await boot(bus, spawn_daemon)
    info = await DaemonClient(bus.nc, keys=KEY).call(
        d.machine_id, PROCESS_START,
        ProcessStartParams(command=["sh", "-c", "sleep 300 & sleep 300"], tag="web"),
    )  # fmt: skip
    await wait_until(lambda: len(procs_in_state(d.home)) == 1)
    out = fleet_daemon(d.home, "doctor")
    assert out.returncode == 0, out.stdout
    assert "RUNAWAY" not in out.stdout
    d.proc.send_signal(signal.SIGKILL)  # the daemon dies; its process runs on
    d.proc.wait()
    assert procinfo.is_alive(info.pid, None)
    out = fleet_daemon(d.home, "doctor")
    assert out.returncode == 1
    assert "RUNAWAY" in out.stdout
    assert str(info.pid) in out.stdout
    out = fleet_daemon(d.home, "doctor", "--clean")
    assert out.returncode == 0, out.stdout + out.stderr
    await wait_until(lambda: not any(procinfo.is_alive(p, None) for p in group(info.pid)))
    assert stranger.poll() is None
    assert fleet_daemon(d.home, "doctor").returncode == 0


def procs_in_state(home: Path) -> list[int]:
    state = load_state(home)
    return [p.pid for p in state.processes if p.state == "running"] if state else []


def group(pgid: int) -> list[int]:
    """Every live pid in a process group (the background process and its children)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    out.append(int(entry))
            except ProcessLookupError:
                continue
    return out


def test_status_without_any_state(tmp_path: Path) -> None:
    out = fleet_daemon(tmp_path, "status")
    assert out.returncode == 3
    assert "no daemon has run" in out.stdout
    assert fleet_daemon(tmp_path, "doctor").returncode == 0


#: A machine's own "daemon": it says it ran, with what it was given.
EVIL = """import os, pathlib
got = dict(os.environ, fds=os.listdir('/proc/self/fd'))
pathlib.Path(os.environ['HOME'], 'evil-ran').write_text(repr(got))
"""


async def test_code_the_machine_writes_is_never_run(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    """~/.fleet is the machine's: a code directory and a ``current`` link written there are
    not code the platform installed. The daemon neither hands over to it at a heartbeat nor
    switches to it on selfUpdate."""
    d, _ = await boot(bus, spawn_daemon, FLEET_HEARTBEAT_S="0.2")
    evil = d.home / ".fleet" / "code" / ("e" * 40)
    (evil / "daemon").mkdir(parents=True)
    (evil / "daemon" / "__main__.py").write_text(EVIL)
    (evil / ".fleet-git-sha").write_text("e" * 40 + "\n")
    (evil.parent / "current").symlink_to(evil.name)
    client = DaemonClient(bus.nc, keys=KEY)
    async with subscribed(bus.nc, subjects.heartbeat(d.machine_id)) as beats:
        for _ in range(5):  # a beat is when a daemon looked for newer code on disk
            await beats.next(timeout=5)
    with pytest.raises(NotFound, match="not installed"):
        await client.call(d.machine_id, SELF_UPDATE, SelfUpdateParams(target_ref="e" * 40))
    assert d.proc.poll() is None
    assert holder_pid(d.home) == d.proc.pid
    assert not (d.home / "evil-ran").exists()


async def test_self_update_runs_only_the_code_the_platform_recorded(
    bus: Bus, spawn_daemon: SpawnDaemon, tmp_path: Path
) -> None:
    """The code store names the current code and its tree's digest: a tree changed after
    the platform installed it is refused; installed again, it runs, in place."""
    repo, sha = code_repo(tmp_path)
    store = tmp_path / "store"
    d, _ = await boot(bus, spawn_daemon, FLEET_CODE_STORE=str(store))
    client = DaemonClient(bus.nc, keys=KEY)
    start = ProcessStartParams(command=["sleep", "300"], tag="bg")
    info: ProcessInfo = await client.call(d.machine_id, PROCESS_START, start)
    install_code(repo, sha, store)
    main = store / sha / "daemon" / "__main__.py"
    main.write_text(main.read_text() + "\n# changed after the install\n")
    with pytest.raises(NotFound, match="not what the platform installed"):
        await client.call(d.machine_id, SELF_UPDATE, SelfUpdateParams(target_ref=sha))

    assert install_code(repo, sha, store) == (sha, True)  # the changed tree is replaced
    subject = subjects.event(subjects.EventKind.DAEMON_STATUS_REPORTED, d.machine_id)
    async with subscribed(bus.nc, subject) as inbox:
        assert (
            await client.call(d.machine_id, SELF_UPDATE, SelfUpdateParams(target_ref=sha))
        ).restarting
        going = await inbox.next_event(timeout=15)
        back = await inbox.next_event(timeout=30)
    assert isinstance(going, DaemonStatusReported)
    assert isinstance(back, DaemonStatusReported)
    assert (going.status, back.status, back.git_sha) == ("stopping", "ready", sha)
    assert d.proc.poll() is None  # in place: the same process
    assert holder_pid(d.home) == d.proc.pid
    listed: ProcessList = await client.call(d.machine_id, PROCESS_LIST, NoParams())
    assert [(p.pid, p.state) for p in listed.processes] == [(info.pid, "running")]


async def test_a_stop_during_a_self_updates_drain_is_a_stop_not_a_restart(
    bus: Bus, spawn_daemon: SpawnDaemon, tmp_path: Path
) -> None:
    """A selfUpdate answered, the daemon drains what was asked before it (here an exec that
    takes 3 s), then re-executes into the new code. A SIGTERM in that drain (a machine stopped
    right after a refreshCode) ends the daemon: it is not lost to the re-exec, which would run
    on until the provider's grace ran out and SIGKILLed the machine."""
    repo, sha = code_repo(tmp_path)
    store = tmp_path / "store"
    d, _ = await boot(bus, spawn_daemon, FLEET_CODE_STORE=str(store))
    install_code(repo, sha, store)
    client = DaemonClient(bus.nc, keys=KEY)
    slow = ExecCommandParams(command=["sh", "-c", "touch started; sleep 3"], timeout_s=30)
    held = asyncio.create_task(client.call(d.machine_id, EXEC_COMMAND, slow))
    await wait_until(lambda: (d.home / "started").exists(), timeout=15)
    update = SelfUpdateParams(target_ref=sha)
    assert (await client.call(d.machine_id, SELF_UPDATE, update)).restarting
    os.kill(d.proc.pid, signal.SIGTERM)
    assert await asyncio.to_thread(d.proc.wait, 30) == 0  # ended, not re-executed in place
    state = load_state(d.home)
    assert state is not None
    assert (state.state, state.state_reason) == ("stopped", "SIGTERM"), state
    assert (await held).exit_code == 0  # asked before the stop: answered


class TestAFrozenBus:
    """The daemon's stop when its NATS server holds the connection open but answers nothing
    (a server stalled, a partition the TCP connection has not noticed yet)."""

    @pytest.fixture
    def nats_server(self, own_nats_server: NatsServer) -> NatsServer:
        """Of the test's own: the test freezes it (SIGSTOP) under the daemon."""
        return own_nats_server

    async def test_a_stop_ends_the_daemon_within_the_providers_grace(
        self, bus: Bus, spawn_daemon: SpawnDaemon, nats_server: NatsServer
    ) -> None:
        """The ``stopping`` report goes unanswered, and the daemon does not then wait out
        NATS's own drain and flush timeouts (30 s and 10 s): it ends, as stopped, before the
        provider's grace (`STOP_GRACE_S`) runs out and SIGKILLs the machine's processes."""
        d, _ = await boot(bus, spawn_daemon)
        assert nats_server.proc is not None
        frozen = nats_server.proc.pid
        os.kill(frozen, signal.SIGSTOP)
        try:
            d.proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(d.proc.wait, STOP_GRACE_S)
        finally:
            os.kill(frozen, signal.SIGCONT)
        assert code == 0
        state = load_state(d.home)
        assert state is not None
        assert (state.state, state.state_reason) == ("stopped", "SIGTERM"), state
