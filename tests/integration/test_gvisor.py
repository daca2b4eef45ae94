"""gvisor machines on the local provider (docs/runtimes.md), on real runsc sandboxes with real
daemons: create to ready through the pipeline, the user's and root's uid inside, the machine's
processes not in the host's process table, gVisor's kernel. The rules in memory:
tests/fast/test_runtime.py.

One stack for the module (tests/gvisor_stack.py); each test makes machines of its own on it
(they restart, stop, or kill the daemon of theirs)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.errors import DaemonTimeout, DaemonUnavailable
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from fleet.up import NatsServer, UpOptions
from fleet.up.stack import check_sandbox
from providers.gvisor import container_id
from providers.local import UP_MARKER
from tests.gvisor_stack import gvisor_settings, host_address, module_stack, module_store
from tests.integration.test_files_cli import _fleet
from tests.integration.test_sessions import SHELL, Term
from tests.waiters import wait_until

__all__ = ["host_address", "module_stack", "module_store"]  # the fixtures: ``stack``, ``store``
#: gVisor's ptrace platform makes every syscall dear: a daemon's start takes seconds.
READY_S = 240.0


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """Of the test's own, on a host address gVisor's network stack reaches (never the host's
    loopback, which the worker's shared server listens on): for the modules whose tests take a
    stack each (this one's is the module's, on `gvisor_settings`)."""
    with NatsServer(tmp_path / "nats", host=host_address()) as server:
        yield server


@pytest.fixture(scope="module")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """gvisor by default, on a host that keeps namespaces machines warm (and no gvisor ones:
    these machines start cold, test_gvisor_pool.py takes pooled ones): a gvisor create must
    never be handed one of them. A daemon on ptrace traps every syscall: on a loaded host its
    answers take seconds, so its calls get a minute (CI saw process.start pass 10 s once)."""
    share = tmp_path_factory.mktemp("gvisor-share")
    (share / "README").write_text("shared with every machine\n")
    share.chmod(0o755)  # as a checkout's directory is: the machine's user reads it
    with gvisor_settings(tmp_path_factory.mktemp("gvisor"), runtime="gvisor",
                         warm_pool="local=1,local:gvisor=0", warm_pool_min_available_mb=0,
                         rpc_timeout_s=60.0, sandbox_share=str(share)) as made:  # fmt: skip
        yield made


async def pooled(settings: Settings) -> None:
    """Until a namespaces machine waits in the warm pool."""
    pool = settings.data_path / "pool"
    await wait_until(lambda: any(pool.glob(f"local/*/*/{UP_MARKER}")), timeout=60)


def host_processes() -> list[tuple[int, str]]:
    """Every process of the host: its pid and command line."""
    found = []
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                try:
                    raw = Path(f"/proc/{entry.name}/cmdline").read_bytes()
                except OSError:
                    continue
                found.append((int(entry.name), raw.replace(b"\0", b" ").decode(errors="replace")))
    return found


def host_cmdlines() -> list[str]:
    return [cmdline for _, cmdline in host_processes()]


def _cgroup(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None


@pytest.mark.timeout(600)
@pytest.mark.asyncio(loop_scope="module")
async def test_a_gvisor_machine_runs_its_daemon_on_gvisors_kernel(
    stack: FleetClient, stack_settings: Settings
) -> None:
    await pooled(stack_settings)  # a namespaces machine waits in the pool
    inst = await stack.create_instance("gv")
    created = await stack.create_machine(inst.id)
    assert created.runtime == "gvisor"
    got = await stack.wait_for(created.id, ["ready", "failed"], timeout_s=READY_S)
    assert got.status == "ready", got.status_reason
    assert (got.runtime, got.runtime_platform) == ("gvisor", "ptrace")
    user = await stack.exec(created.id, ["id", "-u"], timeout_s=60)
    assert user.exit_code == 0, user.stderr
    assert int(user.stdout) >= 200000  # the machine's own uid, not root
    root = await stack.exec(created.id, ["id", "-u"], timeout_s=60, user="root")
    assert (root.exit_code, root.stdout.strip()) == (0, "0"), root.stderr
    kernel = await stack.exec(created.id, ["dmesg"], timeout_s=60, user="root")
    assert "gVisor" in kernel.stdout, kernel
    cli = await _fleet(stack_settings, "machines", "exec", created.id, "--user", "root", "--",
                       "id", "-u")  # fmt: skip
    out, err = await asyncio.wait_for(cli.communicate(), 120)
    assert (cli.returncode, out) == (0, b"0\n"), err
    # A command that stays: neither it nor the daemon is a process of the host.
    marker = "sleep 613.37"
    await stack.start_process(created.id, marker.split())
    inside = await stack.exec(created.id, ["ps", "-eo", "args"], timeout_s=60)
    assert marker in inside.stdout, inside
    assert "daemon.supervise" in inside.stdout, inside
    assert marker not in "\n".join(host_cmdlines())
    assert not host_processes_of(created.id)  # no process of the host is the machine's
    cid = container_id(created.id)
    assert [c for c in host_cmdlines() if "runsc" in c and cid in c]  # runsc stands for it


def host_processes_of(machine_id: str) -> list[int]:
    """Host processes whose environment names the machine (as a daemon's does)."""
    want = f"FLEET_MACHINE_ID={machine_id}".encode()
    found = []
    with os.scandir("/proc") as entries:
        for entry in entries:
            if entry.name.isdigit():
                try:
                    if want in Path(f"/proc/{entry.name}/environ").read_bytes().split(b"\0"):
                        found.append(int(entry.name))
                except OSError:
                    continue
    return found


async def ready_gvisor(stack: FleetClient, name: str) -> str:
    inst = await stack.create_instance(name)
    created = await stack.create_machine(inst.id)
    got = await stack.wait_for(created.id, ["ready", "failed"], timeout_s=READY_S)
    assert got.status == "ready", got.status_reason
    return created.id


async def paused_and_resumed(stack: FleetClient, mid: str) -> None:
    """Pause the machine, resume it, and wait until its daemon answers again."""
    await stack.pause_machine(mid)
    paused = await stack.wait_for(mid, ["paused", "ready", "failed"], timeout_s=300)
    assert paused.status == "paused", paused.status_reason
    await stack.resume_machine(mid)
    ready = await stack.wait_for(mid, ["ready", "failed"], timeout_s=300)
    assert ready.status == "ready", ready.status_reason
    await wait_until(lambda: answers(stack, mid), timeout=120, every=0.5)


async def answers(stack: FleetClient, mid: str) -> bool:
    try:
        return (await stack.exec(mid, ["echo", "back"], timeout_s=30)).stdout == "back\n"
    except (DaemonUnavailable, DaemonTimeout):
        return False


def sandbox_processes(machine_id: str) -> list[str]:
    cid = container_id(machine_id)
    return [c for c in host_cmdlines() if "runsc" in c and cid in c]


@pytest.mark.timeout(600)
@pytest.mark.asyncio(loop_scope="module")
async def test_a_gvisor_machine_serves_files_and_terminals_and_keeps_its_home_across_a_stop(
    stack: FleetClient, stack_settings: Settings
) -> None:
    mid = await ready_gvisor(stack, "gv-files")
    # The daemon's token is root's, in gVisor's kernel: the machine's user cannot read it.
    stolen = await stack.exec(mid, ["cat", "/run/fleet-token/token"], timeout_s=60)
    assert stolen.exit_code != 0
    assert "denied" in stolen.stderr.lower(), stolen
    # Files go through the daemon, into the home on the host.
    await stack.write_file(mid, "notes.txt", "kept\n")
    assert (await stack.read_file(mid, "notes.txt")).content == "kept\n"
    home = stack_settings.data_path.resolve() / "machines" / mid / "home"
    assert (home / "notes.txt").read_text() == "kept\n"
    # A terminal, through the daemon: a shell on gVisor's kernel, as the machine's user.
    opened = await stack.open_session(mid, SHELL, cols=80, rows=24, name="gv")
    term = Term(await stack.attach_session(mid, opened.session_id))
    await term.type("echo uid-$(id -u) && uname -v && exit 0\n")
    await term.until(b"uid-2", timeout=120)
    assert await term.to_close(timeout=120) == 1000
    assert b"uid-0" not in term.text
    # The daemon restarts in place (its supervisor, inside, starts it again).
    log = home.parent / "daemon.log"
    survivor = await stack.start_process(mid, ["sleep", "614.25"], tag="survivor")
    await stack.restart_machine(mid)
    await wait_until(lambda: log.read_text().count("daemon_started") >= 2, timeout=120)
    await wait_until(lambda: answers(stack, mid), timeout=120, every=0.5)
    kept = [(p.tag, p.state) for p in await stack.list_processes(mid) if p.pid == survivor.pid]
    assert kept == [("survivor", "running")]
    # Its log, read back through the daemon (its stdout is a host descriptor gVisor cannot
    # open again: the provider gives the file read-only at a path of its own).
    said = await stack.daemon_log(mid)
    assert sum("daemon_started" in line for line in said) >= 2, said[-5:]
    # What FLEET_SANDBOX_SHARE lists, read-only, as a namespaces machine has it.
    [share] = stack_settings.sandbox_shared
    shared = await stack.exec(mid, ["cat", str(share / "README")], timeout_s=60)
    assert shared.stdout == "shared with every machine\n", shared
    wrote = await stack.exec(mid, ["touch", str(share / "mine")], timeout_s=60)
    assert wrote.exit_code != 0
    assert not (share / "mine").exists()
    # The sandbox is in the machine's cgroup: its limits hold.
    groups = [cgroup for pid, cmdline in host_processes() if container_id(mid) in cmdline
              for cgroup in [_cgroup(pid)] if cgroup is not None]  # fmt: skip
    assert groups
    assert all(f"/fleet/{mid}" in g for g in groups), groups
    stopped = await stack.stop_machine(mid)
    assert (await stack.wait_for(stopped.id, ["stopped"], timeout_s=120)).status == "stopped"
    assert not sandbox_processes(mid)  # its sandbox is gone, and its memory with it
    await stack.start_machine(mid)
    again = await stack.wait_for(mid, ["ready", "failed"], timeout_s=READY_S)
    assert again.status == "ready", again.status_reason
    assert (await stack.read_file(mid, "notes.txt")).content == "kept\n"


def test_fleet_up_refuses_gvisor_on_a_host_without_runsc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLEET_RUNSC", str(tmp_path / "no-runsc"))
    why = check_sandbox(UpOptions(runtime="gvisor"))
    assert why is not None
    assert "runsc" in why
    assert "refusing" in why
    monkeypatch.setenv("FLEET_RUNTIME", "gvisor")  # the setting, not the flag, says so
    assert check_sandbox(UpOptions()) is not None
    monkeypatch.delenv("FLEET_RUNSC")
    assert check_sandbox(UpOptions(runtime="gvisor")) is None  # this host has runsc


@pytest.mark.timeout(600)
@pytest.mark.asyncio(loop_scope="module")
async def test_a_gvisor_machine_under_an_egress_policy_fails_by_name_never_unfiltered(
    stack: FleetClient,
) -> None:
    inst = await stack.create_instance("gv-egress")
    # Addresses are enforced (test_gvisor_egress.py); a name is not, and refused by name.
    await stack.set_network_policy(inst.id, default="deny", allow=["192.0.2.0/24", "x.test"])
    created = await stack.create_machine(inst.id)
    got = await stack.wait_for(created.id, ["ready", "failed"], timeout_s=READY_S)
    assert got.status == "failed"
    assert "egress" in got.status_reason, got.status_reason
    assert "gvisor" in got.status_reason, got.status_reason
    assert "x.test" in got.status_reason, got.status_reason
    await wait_until(lambda: not sandbox_processes(created.id), timeout=60)


#: Run inside the machine as its user: read every other process's inherited descriptors and
#: environment, over and over, into a loot file, while the daemon is killed and started again
#: (a new daemon, before it makes itself non-dumpable, is the moment to catch); until a file
#: ``done`` is there (the machine stays on the module's stack after the test).
SNATCHER = r"""
import os, sys, time
out = open(sys.argv[1], 'ab')
end = time.monotonic() + float(sys.argv[2])
me = os.getpid()
while time.monotonic() < end and not os.path.exists('done'):
    for pid in os.listdir('/proc'):
        if not pid.isdigit() or int(pid) == me:
            continue
        for what in ('environ', 'fd/0', 'fd/3', 'fd/4', 'fd/5'):
            try:
                f = os.open(f'/proc/{pid}/{what}', os.O_RDONLY | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                out.write(os.read(f, 1 << 16) + b'\n')
            except OSError:
                pass
            os.close(f)
    out.flush()
    time.sleep(0.01)  # the daemon's start takes a second or more here: still caught, if open
"""


@pytest.mark.timeout(600)
@pytest.mark.asyncio(loop_scope="module")
async def test_a_gvisor_machines_user_never_catches_its_daemons_token(
    stack: FleetClient, stack_settings: Settings, store: Store
) -> None:
    mid = await ready_gvisor(stack, "gv-token")
    sealed = await store.machine_secret(mid)
    assert sealed is not None
    token = SecretBox(stack_settings.secret_key).decrypt(sealed).encode()
    await stack.write_file(mid, "snatch.py", SNATCHER)
    loot = stack_settings.data_path.resolve() / "machines" / mid / "home" / "loot"
    python = sys.executable
    await stack.start_process(mid, [python, "-I", "snatch.py", "loot", "90"], tag="snatcher")
    await wait_until(loot.exists, timeout=60)
    log = loot.parent.parent / "daemon.log"
    for started in range(1, 3):  # the daemon killed by the machine's user, started again
        daemon = log.read_text().rsplit("daemon_started pid=", 1)[1].split()[0]
        # The kill waits for a file the test makes once process.start has been answered: a
        # daemon killed before its answer went out would leave the call to time out.
        go = f"go-{started}"
        await stack.start_process(mid, ["sh", "-c", f"until [ -e {go} ]; do sleep 0.1; done; "
                                        f"kill -9 {daemon}"])  # fmt: skip
        (loot.parent / go).touch()

        def again(n: int = started + 1) -> bool:
            return log.read_text().count("daemon_started") >= n

        await wait_until(again, timeout=120)
        await wait_until(lambda: answers(stack, mid), timeout=120, every=0.5)
    (loot.parent / "done").touch()
    got = loot.read_bytes()
    assert b"FLEET_MACHINE_ID=" in got  # the probe reads what the user's processes may
    assert token not in got
