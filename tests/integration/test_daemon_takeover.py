"""A starting daemon that is newer takes over from the running one ; an equal
or older one refuses (exit 3, naming the holder). Real daemon processes, real git repos."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from base.lockfile import holder_pid
from base.platform_code import resolve_sha
from contracts.bus import subjects
from contracts.bus.events import DaemonStatusReported
from contracts.daemon.rpc import PROCESS_LIST, PROCESS_START, ProcessList, ProcessStartParams
from contracts.ids import new_machine_id
from contracts.rpc.jsonrpc import NoParams
from contracts.status import MachineStatus
from controlplane.bus import Bus
from controlplane.calls.daemon_client import DaemonClient
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import Store
from daemon.supervision.control import ControlUnavailable, control_request
from daemon.supervision.state import load_state
from fleet.client import FleetClient
from fleet.up import NatsServer
from providers.code import unpack
from providers.local import daemon_argv
from tests.conftest import MACHINE_TOKEN, SpawnDaemon, git, kill_leftovers
from tests.integration.test_daemon import KEY, boot
from tests.integration.test_pipeline import home_of
from tests.integration.test_refresh import code_repo
from tests.integration.test_supervision import daemon_pid
from tests.waiters import Inbox, subscribed, wait_until


def installed(repo: Path, ref: str, where: Path, version: str | None = None) -> Path:
    """The daemon code of ``ref`` as a provider installs it; ``version``: as if that code came
    with a fleetd package of that version (a dist-info found first on its import path)."""
    code_dir = where / resolve_sha(repo, ref)
    where.mkdir(parents=True, exist_ok=True)
    unpack(repo, code_dir.name, code_dir)
    if version is not None:
        meta = code_dir / f"fleetd-{version}.dist-info"
        meta.mkdir()
        (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fleetd\nVersion: {version}\n")
    return code_dir


def reports(bus: Bus, machine_id: str) -> AbstractAsyncContextManager[Inbox]:
    return subscribed(bus.nc, subjects.event(subjects.EventKind.DAEMON_STATUS_REPORTED, machine_id))


async def test_a_newer_version_takes_over_and_keeps_the_processes(
    bus: Bus, spawn_daemon: SpawnDaemon, tmp_path: Path
) -> None:
    repo, sha = code_repo(tmp_path)
    newer = installed(repo, sha, tmp_path / "codes", version="99.0")
    d, _ = await boot(bus, spawn_daemon)
    client = DaemonClient(bus.nc, keys=KEY)
    start = ProcessStartParams(command=["sleep", "300"], tag="bg")
    info = await client.call(d.machine_id, PROCESS_START, start)

    async with reports(bus, d.machine_id) as inbox:
        taker = spawn_daemon(d.machine_id, PYTHONPATH=str(newer))
        going = await inbox.next_event(timeout=15)
        back = await inbox.next_event(timeout=30)
    assert isinstance(going, DaemonStatusReported)
    assert isinstance(back, DaemonStatusReported)
    assert (going.status, going.version) == ("stopping", "0.1.0")
    assert (back.status, back.version, back.git_sha) == ("ready", "99.0", sha)
    assert d.proc.wait(timeout=15) == 0
    assert holder_pid(d.home) == taker.proc.pid
    listed: ProcessList = await client.call(d.machine_id, PROCESS_LIST, NoParams())
    assert [(p.pid, p.state) for p in listed.processes] == [(info.pid, "running")]
    # The state file says `running` a moment after the ready report (it is written after it).
    await wait_until(lambda: getattr(load_state(d.home), "state", None) == "running", timeout=10)
    state = load_state(d.home)
    assert state is not None
    assert (state.pid, state.version, state.state) == (taker.proc.pid, "99.0", "running")
    assert state.previous is not None
    assert f"handing over to pid {taker.proc.pid}" in state.previous


async def test_an_older_version_refuses_and_names_the_holder(
    bus: Bus, spawn_daemon: SpawnDaemon, tmp_path: Path
) -> None:
    repo, sha = code_repo(tmp_path)
    newer = installed(repo, sha, tmp_path / "codes", version="99.0")
    d, _ = await boot(bus, spawn_daemon, PYTHONPATH=str(newer))
    older = spawn_daemon(d.machine_id)  # this checkout: 0.1.0
    assert older.proc.wait(timeout=30) == 3
    said = older.output()
    assert f"pid {d.proc.pid}" in said
    assert "is not newer" in said
    assert "package version 0.1.0 is older than 99.0" in said
    assert d.proc.poll() is None
    assert holder_pid(d.home) == d.proc.pid


async def test_with_equal_versions_git_ancestry_decides(
    bus: Bus, spawn_daemon: SpawnDaemon, tmp_path: Path
) -> None:
    """Old: code A installed by git archive. New: a checkout of B, a child of A, takes over.
    Then a checkout of A again: older by ancestry, it refuses."""
    repo, a = code_repo(tmp_path)
    old = installed(repo, a, tmp_path / "codes")
    git("commit", "-q", "--allow-empty", "-m", "B", cwd=repo)
    b = git("rev-parse", "HEAD", cwd=repo)
    d, _ = await boot(bus, spawn_daemon, PYTHONPATH=str(old))

    async with reports(bus, d.machine_id) as inbox:
        taker = spawn_daemon(d.machine_id, PYTHONPATH=str(repo))
        assert (await inbox.next_event(timeout=15)).status == "stopping"  # type: ignore[union-attr]
        back = await inbox.next_event(timeout=30)
    assert isinstance(back, DaemonStatusReported)
    assert (back.status, back.git_sha) == ("ready", b)
    assert d.proc.wait(timeout=15) == 0
    assert holder_pid(d.home) == taker.proc.pid

    clone = tmp_path / "clone-at-a"
    git("clone", "-q", str(repo), str(clone))
    git("checkout", "-q", "--detach", a, cwd=clone)
    behind = spawn_daemon(d.machine_id, PYTHONPATH=str(clone))
    assert behind.proc.wait(timeout=30) == 3
    assert f"pid {taker.proc.pid}" in behind.output()
    assert "not known to descend" in behind.output()
    assert holder_pid(d.home) == taker.proc.pid


async def test_handover_on_the_control_port_needs_the_secret_and_a_live_pid(
    bus: Bus, spawn_daemon: SpawnDaemon
) -> None:
    d, _ = await boot(bus, spawn_daemon)
    await wait_until(lambda: (s := load_state(d.home)) is not None and s.state == "running")
    state = load_state(d.home)
    assert state is not None
    assert state.control_port
    reader, writer = await asyncio.open_connection("127.0.0.1", state.control_port)
    writer.write(f"POST /handover?pid={os.getpid()} HTTP/1.1\r\n\r\n".encode())
    answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 401")
    for pid in ("999999999", "abc", str(d.proc.pid), ""):
        with pytest.raises(ControlUnavailable, match="400"):
            control_request(d.home, state.control_port, "POST", f"/handover?pid={pid}")
    assert control_request(d.home, state.control_port, "GET", "/status")["state"] == "running"
    assert d.proc.poll() is None


def start_supervisor(env: dict[str, str], home: Path, log: Path) -> subprocess.Popen[bytes]:
    """A local machine's supervisor, without the sandbox, running this checkout's daemon."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "daemon.supervise", *daemon_argv()], env=env, cwd=home,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


async def test_the_supervisor_follows_a_daemon_that_took_over(
    bus: Bus, spawn_daemon: SpawnDaemon, tmp_path: Path, nats_server: NatsServer
) -> None:
    """The machine's supervisor watches the taker (not its child: polled), and when the taker
    dies it starts a daemon again instead of ending the machine."""
    repo, sha = code_repo(tmp_path)
    newer = installed(repo, sha, tmp_path / "codes", version="99.0")
    mid = new_machine_id()
    home = tmp_path / "machines" / mid / "home"
    home.mkdir(parents=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "FLEET_NATS_URL": nats_server.url,
           "FLEET_MACHINE_ID": mid, "FLEET_MACHINE_TOKEN": MACHINE_TOKEN}  # fmt: skip
    log = tmp_path / "supervisor.log"
    async with reports(bus, mid) as inbox:
        sup = start_supervisor(env, home, log)
        try:
            assert (await inbox.next_event(timeout=15)).status == "ready"  # type: ignore[union-attr]
            first = holder_pid(home)
            taker = spawn_daemon(mid, PYTHONPATH=str(newer))
            assert (await inbox.next_event(timeout=15)).status == "stopping"  # type: ignore[union-attr]
            back = await inbox.next_event(timeout=30)
            assert isinstance(back, DaemonStatusReported)
            assert (back.status, back.version) == ("ready", "99.0")
            await wait_until(lambda: f"daemon_handed_over old={first} new={taker.proc.pid}"
                             in log.read_text())  # fmt: skip
            assert sup.poll() is None

            taker.proc.send_signal(signal.SIGKILL)  # the taker dies: the supervisor restarts
            again = await inbox.next_event(timeout=30)
            assert isinstance(again, DaemonStatusReported)
            assert (again.status, again.version) == ("ready", "0.1.0")
            assert sup.poll() is None
        finally:
            os.killpg(sup.pid, signal.SIGTERM)
            sup.wait(timeout=30)
            kill_leftovers(home)


#: Run inside a sandboxed machine by tool.execCommand: start a daemon of the code directory
#: argv[1] with the running daemon's environment (its parent's), in a session of its own, and
#: return at once: the new daemon is then an orphan of the machine, as a package upgrade's
#: restart would leave it.
#: Someone on the machine who holds its token (a machine's own commands cannot read it from
#: the daemon: daemon/supervision/nodump.py; here the test hands it over) starts a newer daemon.
LAUNCHER = """
import os, sys
env = dict(os.environ, PYTHONPATH=sys.argv[1], FLEET_MACHINE_TOKEN=sys.argv[2])
env.pop("FLEET_EXEC_ID")  # not one of this command's processes: it must outlive it
log = os.path.join(env["HOME"], "taker.log")
os.posix_spawn(sys.executable, [sys.executable, "-P", "-m", "daemon"], env, setsid=True,
               file_actions=[(os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT, 0o600),
                             (os.POSIX_SPAWN_DUP2, 1, 2)])
"""


async def test_in_a_sandbox_the_supervisor_follows_the_newer_daemon(
    stack: FleetClient, settings: Settings, store: Store, tmp_path: Path
) -> None:
    repo, sha = code_repo(tmp_path)
    inst = await stack.create_instance("takeover")
    machine = await stack.create_machine(inst.id)
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=60)
    assert done.status is MachineStatus.READY, done.status_reason
    bg = await stack.start_process(machine.id, ["sleep", "300"], tag="survivor")
    old = daemon_pid(settings, machine.id)
    newer = installed(repo, sha, home_of(settings, machine.id), version="99.0")

    sealed = await store.machine_secret(machine.id)
    assert sealed is not None
    token = SecretBox(settings.secret_key).decrypt(sealed)
    launcher = [sys.executable, "-c", LAUNCHER, str(newer), token]
    launched = await stack.exec(machine.id, launcher)
    assert launched.exit_code == 0, launched.stderr

    async def version_is(want: str) -> bool:
        m = await stack.get_machine(machine.id)
        return m.daemon_version == want and m.status is MachineStatus.READY

    async def taken_over() -> bool:
        # The taker reports its version before the old daemon has left the sandbox (it hands
        # over, then exits): until then the supervisor's first child may still be the old one.
        return await version_is("99.0") and daemon_pid(settings, machine.id) not in (None, old)

    await wait_until(taken_over, timeout=30, every=0.2)
    taker = daemon_pid(settings, machine.id)  # the supervisor's child now: it was orphaned
    assert taker not in (None, old)
    tags = [p.tag for p in await stack.list_processes(machine.id) if p.pid == bg.pid]
    assert tags == ["survivor"]  # re-adopted by the taker

    assert taker is not None
    os.kill(taker, signal.SIGKILL)  # the supervisor restarts its own daemon, machine kept
    await wait_until(lambda: version_is("0.1.0"), timeout=30, every=0.2)
    tags = [p.tag for p in await stack.list_processes(machine.id) if p.pid == bg.pid]
    assert tags == ["survivor"]
