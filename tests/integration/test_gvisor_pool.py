"""The warm pool of gvisor sandboxes (docs/warm-pool.md, providers/local/gvisor_pool.py), on real
runsc sandboxes with real daemons: a gvisor create takes a pooled gvisor sandbox, which ends up
as a cold one would (its own uid, its token root's, gVisor's kernel), and a namespaces create on
the same host still takes a bwrap one. The setting's rules: tests/fast/test_warm_pool.py; a
claim's file moves: tests/unit/test_gvisor_pool_parts.py.

One stack for the module (tests/gvisor_stack.py), whose pool refills while a test runs: each
test claims machines of its own from it (one is restarted and stopped, one paused)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from base.procinfo import env_roots
from base.version import SOURCE_ROOT
from controlplane.policy import Placement
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from fleet.up import NatsServer
from providers.gvisor.runsc import BUNDLE, PID_FILE, Runsc, is_gvisor, sandbox_pid
from providers.local import POOL_SLOT_FILE, UP_MARKER, GvisorPoolBackend, LocalProvider
from providers.sandbox import NETNS_OF, has_pasta
from services.provisioner.builds.environment import machine_placement
from tests.gvisor_stack import gvisor_settings, local_provider, module_stack, module_store
from tests.integration import test_gvisor_fork_memory as fork_memory
from tests.integration.test_gvisor import READY_S, answers, nats_server, paused_and_resumed
from tests.integration.test_gvisor_egress import Listener, greeting_listeners, reaches_only
from tests.integration.test_pasta_nodelay import nats_side
from tests.waiters import wait_until

# The fixtures: ``stack`` on this module's settings; NATS on an address gVisor's network stack
# reaches, for the test without a stack.
__all__ = ["module_stack", "module_store", "nats_server"]
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """gvisor by default, with ``local=1``: one namespaces machine and one gvisor sandbox warm.
    A daemon on ptrace traps every syscall: its calls get a minute."""
    with gvisor_settings(tmp_path_factory.mktemp("gvisor-pool"), runtime="gvisor",
                         warm_pool="local=1", warm_pool_min_available_mb=0,
                         rpc_timeout_s=60.0) as made:  # fmt: skip
        yield made


@pytest_asyncio.fixture(loop_scope="module")
async def listeners() -> AsyncIterator[tuple[str, Listener, Listener]]:
    """Two listeners on an address gVisor's network stack reaches (test_gvisor_egress.py), in
    the module's event loop."""
    async with greeting_listeners() as made:
        yield made


def waiting(settings: Settings, pool: str) -> dict[str, int]:
    """The slots of ``pool`` (``local``, ``gvisor``) whose machine waits, and for gvisor ones
    their sandbox's host pid (0 for a bwrap one)."""
    found = {}
    for up in (settings.data_path / "pool" / pool).glob(f"*/*/{UP_MARKER}"):
        pid = (up.parent / BUNDLE / PID_FILE).read_text() if pool == "gvisor" else "0"
        found[up.parent.name] = int(pid)
    return found


#: Every path under ``argv[1]``, one a line (inside a machine).
WALK = ("import os, sys\nfor top, dirs, files in os.walk(sys.argv[1]):\n"
        "    print(*(os.path.join(top, n) for n in dirs + files), sep='\\n')")  # fmt: skip


async def pooled_gvisor(
    stack: FleetClient, settings: Settings, name: str, instance_id: str | None = None
) -> tuple[str, str]:
    """A gvisor machine created (of a new instance, or of ``instance_id``) while a gvisor
    sandbox waits in the pool: (its id, its slot); it is that sandbox, started before the
    create."""
    await wait_until(lambda: bool(waiting(settings, "gvisor")), timeout=READY_S)
    before = waiting(settings, "gvisor")
    instance_id = instance_id or (await stack.create_instance(name)).id
    created = await stack.create_machine(instance_id)
    got = await stack.wait_for(created.id, ["ready", "failed"], timeout_s=READY_S)
    assert got.status == "ready", got.status_reason
    assert (got.runtime, got.runtime_platform) == ("gvisor", "ptrace")
    machine_dir = settings.data_path / "machines" / created.id
    slot = (machine_dir / POOL_SLOT_FILE).read_text()
    assert slot in before  # it came from the pool...
    assert sandbox_pid(machine_dir) == before[slot]  # ...as the sandbox started before it
    return created.id, slot


@pytest.mark.timeout(600)
async def test_a_pooled_gvisor_machines_connection_to_nats_is_not_nagled(
    stack: FleetClient, stack_settings: Settings
) -> None:
    """Its pasta's sockets have Nagle off, as a bwrap machine's (test_pasta_nodelay.py): with it
    on, its ready report waited ~40 ms for a delayed ACK (benchmark 27)."""
    _, slot = await pooled_gvisor(stack, stack_settings, "gvp-nagle")
    port = urlsplit(stack_settings.nats_url).port
    assert port is not None
    [pasta] = env_roots(NETNS_OF, slot)
    flags = nats_side(pasta, port)
    assert flags, "no connection of the machine's pasta to NATS"
    assert all(flags), flags


@pytest.mark.timeout(900)
async def test_a_gvisor_create_takes_a_pooled_gvisor_sandbox_which_keeps_nothing_of_its_slot(
    stack: FleetClient, stack_settings: Settings
) -> None:
    a, slot_a = await pooled_gvisor(stack, stack_settings, "gvp-a")
    b, slot_b = await pooled_gvisor(stack, stack_settings, "gvp-b")
    machines = stack_settings.data_path.resolve() / "machines"
    for mid in (a, b):
        kernel = await stack.exec(mid, ["dmesg"], timeout_s=60, user="root")
        assert "gVisor" in kernel.stdout, kernel
    # Each runs as its own uid, the one its directory records (a pooled slot's uid went with
    # its claim: no later slot or machine is given it).
    uids = {}
    for mid in (a, b):
        got = await stack.exec(mid, ["id", "-u"], timeout_s=60)
        assert got.exit_code == 0, got.stderr
        uids[mid] = int(got.stdout)
        assert uids[mid] == int((machines / mid / "uid").read_text())
        assert uids[mid] >= 200000
    assert uids[a] != uids[b]
    # Its own token is root's; the other machine's, and the pool's directories, are not there
    # (the probe finds what is: its own home).
    look = "import os, sys; os.stat(sys.argv[1])"
    home = await stack.exec(a, ["sh", "-c", f"python3 -c '{look}' ~"], timeout_s=60)
    assert home.exit_code == 0, home
    pool = stack_settings.data_path.resolve() / "pool"
    for mid, other in ((a, b), (b, a)):
        own = await stack.exec(mid, ["cat", "/run/fleet-token/token"], timeout_s=60)
        assert own.exit_code != 0
        assert "denied" in own.stderr.lower(), own
        theirs = machines / other / "gvisor-token" / "token"
        assert theirs.read_text()  # written, on the host
        for path in (theirs, theirs.parent):
            # Python's stat, not coreutils': this runsc fails coreutils' statx for any path.
            peek = await stack.exec(mid, ["python3", "-c", look, str(path)], timeout_s=60)
            assert peek.exit_code != 0, peek
            assert "FileNotFoundError" in peek.stderr or "PermissionError" in peek.stderr, peek
        # Of the pool's directory, only the way to its own home is there (the mount point's
        # parents in its root): no other slot's, no file of the pool's.
        own_home = (await stack.exec(mid, ["sh", "-c", "echo $HOME"])).stdout.strip()
        walk = await stack.exec(mid, ["python3", "-c", WALK, str(pool)], timeout_s=60)
        assert walk.exit_code == 0, walk
        seen = [p for p in walk.stdout.splitlines() if not p.startswith(own_home + "/")]
        assert all(own_home.startswith(p) for p in seen), (own_home, seen)
    # Root inside a pooled machine is a host uid of its own, as a cold one's (its slot's, moved
    # with its claim): never the host's root, nor its user's, nor the other machine's.
    roots = {}
    for mid in (a, b):
        made = await stack.exec(
            mid, ["sh", "-c", "chmod 0755 ~ && mkdir -m 0777 ~/pub && sudo touch ~/pub/r"],
            timeout_s=60,
        )  # fmt: skip
        assert made.exit_code == 0, made.stderr
        roots[mid] = int((machines / mid / "root-uid").read_text())
        assert (machines / mid / "home" / "pub" / "r").lstat().st_uid == roots[mid]
        assert roots[mid] not in (0, uids[a], uids[b])
    assert roots[a] != roots[b]
    # Nothing of the pool's wire is left in the machine: its supervisor's stdin is /dev/null,
    # and the slot's directory is gone.
    for mid, slot in ((a, slot_a), (b, slot_b)):
        stdin = await stack.exec(mid, ["readlink", "/proc/1/fd/0"], timeout_s=60, user="root")
        assert stdin.stdout.strip() == "/dev/null", stdin
        assert not list((stack_settings.data_path / "pool" / "gvisor").glob(f"*/{slot}"))
    # Its daemon, restarted, comes back as the machine (the token is in its token directory).
    log = machines / a / "daemon.log"
    await stack.restart_machine(a)
    await wait_until(lambda: log.read_text().count("daemon_started") >= 2, timeout=120)
    await wait_until(lambda: answers(stack, a), timeout=120, every=0.5)
    # A stop ends the sandbox, and the slot's pasta with it.
    stopped = await stack.stop_machine(a)
    assert (await stack.wait_for(stopped.id, ["stopped"], timeout_s=120)).status == "stopped"
    assert sandbox_pid(machines / a) is None
    assert not has_pasta(slot_a)


@pytest.mark.timeout(900)
async def test_a_namespaces_create_beside_a_gvisor_pool_takes_a_bwrap_machine(
    stack: FleetClient, stack_settings: Settings
) -> None:
    await wait_until(lambda: bool(waiting(stack_settings, "gvisor")), timeout=READY_S)
    await wait_until(lambda: bool(waiting(stack_settings, "local")), timeout=READY_S)
    bwrap = waiting(stack_settings, "local")
    inst = await stack.create_instance("gvp-ns")
    created = await stack.create_machine(inst.id, runtime="namespaces")
    got = await stack.wait_for(created.id, ["ready", "failed"], timeout_s=READY_S)
    assert got.status == "ready", got.status_reason
    assert (got.runtime, got.runtime_platform) == ("namespaces", None)
    machine_dir: Path = stack_settings.data_path / "machines" / created.id
    assert (machine_dir / POOL_SLOT_FILE).read_text() in bwrap
    assert not is_gvisor(machine_dir)
    kernel = await stack.exec(created.id, ["uname", "-v"], timeout_s=60)
    assert "gVisor" not in kernel.stdout, kernel


@pytest.mark.timeout(900)
async def test_a_pooled_gvisor_machine_holds_its_egress_policy_across_a_pause_and_resume(
    stack: FleetClient, stack_settings: Settings, listeners: tuple[str, Listener, Listener]
) -> None:
    host, first, second = listeners
    inst = await stack.create_instance("gvp-egress")
    await stack.set_network_policy(inst.id, default="deny", allow=[f"{host}:{first.port}"])
    mid, slot = await pooled_gvisor(stack, stack_settings, "", inst.id)
    await reaches_only(stack, mid, host, first, second)
    # Paused (under the name the pooled sandbox ran as), restored as the machine's own, in a
    # new namespace under the same policy; the slot's pasta gone with the pause.
    await stack.pause_machine(mid)
    paused = await stack.wait_for(mid, ["paused", "ready", "failed"], timeout_s=300)
    assert paused.status == "paused", paused.status_reason
    # pasta ends when the paused sandbox's namespace goes: a moment after the status, if busy.
    await wait_until(lambda: not has_pasta(slot), timeout=30)
    await stack.resume_machine(mid)
    ready = await stack.wait_for(mid, ["ready", "failed"], timeout_s=300)
    assert ready.status == "ready", ready.status_reason
    await wait_until(lambda: answers(stack, mid), timeout=120, every=0.5)
    await reaches_only(stack, mid, host, first, second)
    got = await stack.exec(mid, ["id", "-u"], timeout_s=60)
    machine_dir = stack_settings.data_path / "machines" / mid
    assert int(got.stdout) == int((machine_dir / "uid").read_text())


#: A provisioner's warm pool of one gvisor sandbox: prints the sandbox's host pid once it
#: waits, then waits to be killed.
POOL_HOLDER = """
import asyncio, os, sys
from pathlib import Path
from providers.gvisor.runsc import Runsc
from providers.local.gvisor_pool import GvisorPoolBackend
from providers.local.provider import LocalProvider

async def main(data, nats, first, last):
    runsc = Runsc("runsc", "ptrace", Path(data))
    provider = LocalProvider(data_dir=Path(data), nats_url=nats, environ=os.environ,
                             uids=(int(first), int(last)), runsc=runsc)
    machine = await GvisorPoolBackend(provider).spawn(lambda: None)
    await machine.wait_up()
    print("sandbox", machine.pid, flush=True)
    await asyncio.Event().wait()

asyncio.run(main(*sys.argv[1:]))
"""


async def said_pid(out: asyncio.StreamReader) -> int:
    """The pid on the ``sandbox <pid>`` line (its log's lines come first)."""
    while line := await out.readline():
        if line.startswith(b"sandbox "):
            return int(line.split()[1])
    pytest.fail("the pool's holder ended before its sandbox waited")


@pytest.mark.timeout(600)
async def test_a_pooled_gvisor_sandbox_ends_with_its_provisioner_and_the_next_removes_it(
    settings: Settings, nats_server: NatsServer
) -> None:
    uids = settings.sandbox_uid_range
    assert uids is not None
    first, last = uids
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", POOL_HOLDER, str(settings.data_path), nats_server.url, str(first),
        str(last), stdout=asyncio.subprocess.PIPE, cwd=SOURCE_ROOT,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        sandbox = await asyncio.wait_for(said_pid(holder.stdout), READY_S)
        [slot] = waiting(settings, "gvisor")
    finally:
        holder.send_signal(signal.SIGKILL)  # the provisioner, gone without a word
        await holder.wait()
    # Its lifeline cut, the pooled machine's supervisor ends it, and the sandbox with it. Its
    # pasta holds a namespace, not a lifeline: the next provisioner removes it.
    await wait_until(lambda: not Path(f"/proc/{sandbox}").exists(), timeout=120)
    backend = GvisorPoolBackend(local_provider(settings, nats_server.url))
    assert await backend.remove_orphans() == 1
    assert not has_pasta(slot)
    assert not list((settings.data_path / "pool" / "gvisor").glob(f"*/{slot}"))


#: A provisioner's gvisor pool of one, filled, then closed, as `fleet up`'s stop closes it, in a
#: process that inherits its orphans (the sandbox is runsc's child, handed over when runsc
#: exits) and reaps them half a second late, as a busy PID 1 does: what is left of runsc's state.
POOL_CLOSER = """
import asyncio, os, subprocess, sys, threading, time
from pathlib import Path
from base import procinfo
from providers.gvisor.runsc import Runsc
from providers.local.gvisor_pool import GvisorPoolBackend
from providers.local.provider import LocalProvider
from providers.warm_pool import WarmPool

spawned = set()  # this process's own children: their waits are their Popen's
started = subprocess.Popen._execute_child

def execute_child(self, *args):
    started(self, *args)
    spawned.add(self.pid)

subprocess.Popen._execute_child = execute_child

def reap_late():
    while True:
        time.sleep(0.5)
        for pid in [int(p) for p in os.listdir("/proc") if p.isdigit()]:
            if pid not in spawned and procinfo.parent(pid) == os.getpid():
                if procinfo.state(pid) == "Z":
                    os.waitpid(pid, os.WNOHANG)

async def main(data, nats, first, last):
    assert procinfo.become_subreaper()
    threading.Thread(target=reap_late, daemon=True).start()
    runsc = Runsc("runsc", "ptrace", Path(data))
    provider = LocalProvider(data_dir=Path(data), nats_url=nats, environ=os.environ,
                             uids=(int(first), int(last)), runsc=runsc)
    async with WarmPool(GvisorPoolBackend(provider), 1, min_available_mb=0) as pool:
        await pool.wait_filled()
    print("left", *sorted(p.name for p in (Path(data) / "gvisor").iterdir()), flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.mark.timeout(600)
async def test_a_pools_close_leaves_no_container_of_its_sandboxes(
    settings: Settings, nats_server: NatsServer
) -> None:
    """Its sandboxes end with their lifeline cut, and runsc's state of each goes with them,
    however late the ended sandbox is reaped: each stop of `fleet up` once left one stopped
    container per pooled sandbox in runsc's state (``runsc list``), which no later start
    removed (found by the soak: the delete entered the network namespace of a sandbox that
    had ended but was not yet reaped, and failed)."""
    uids = settings.sandbox_uid_range
    assert uids is not None
    closer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", POOL_CLOSER, str(settings.data_path), nats_server.url,
        str(uids[0]), str(uids[1]), stdout=asyncio.subprocess.PIPE, cwd=SOURCE_ROOT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(closer.communicate(), READY_S)
    assert closer.returncode == 0
    [said] = [line for line in out.decode().splitlines() if line.startswith("left")]
    assert said.split()[1:] == []


@pytest.mark.timeout(900)
async def test_a_pooled_machine_resumed_is_left_running_by_its_next_start(
    stack: FleetClient, stack_settings: Settings, store: Store
) -> None:
    """The provisioner's start of its machines (at its own start) leaves a machine that came
    from the pool, paused and resumed, as it is: it was taken for one whose sandbox had ended
    and started afresh, its processes lost, and what its sandbox had not yet written of their
    files written after its successor began (found by the soak, seed 3: lines of a file written
    twice after a provisioner's restart)."""
    mid, _ = await pooled_gvisor(stack, stack_settings, "gvp-resumed-start")
    machine_dir = stack_settings.data_path / "machines" / mid
    await stack.write_file(mid, "counter.py", fork_memory.COUNTER)
    proc = await stack.start_process(mid, [sys.executable, "-I", "counter.py", "count"],
                                     tag="counter")  # fmt: skip
    await wait_until(lambda: fork_memory.count_in(machine_dir / "home")[1] >= 3, timeout=180)
    await paused_and_resumed(stack, mid)
    await wait_until(lambda: answers(stack, mid), timeout=180, every=0.5)
    pid = sandbox_pid(machine_dir)
    assert pid is not None
    pid_inside, before = fork_memory.count_in(machine_dir / "home")

    async def placement(machine_id: str) -> Placement:
        return await machine_placement(store, stack_settings, await store.get_machine(machine_id))

    provider = LocalProvider(data_dir=stack_settings.data_path, nats_url=stack_settings.nats_url,
                             environ=os.environ, uids=stack_settings.sandbox_uid_range,
                             runsc=Runsc(stack_settings.runsc, stack_settings.gvisor_platform,
                                         stack_settings.data_path),
                             placement=placement)  # fmt: skip
    sealed = await store.machine_secret(mid)
    assert sealed is not None
    token = SecretBox(stack_settings.secret_key).decrypt(sealed)
    assert await provider.start(mid, token) == f"local:{pid}"
    await wait_until(fork_memory.counted_past(machine_dir / "home", before), timeout=180)
    assert fork_memory.count_in(machine_dir / "home")[0] == pid_inside
    listed = [(p.pid, p.state) for p in await stack.list_processes(mid) if p.tag == "counter"]
    assert listed == [(proc.pid, "running")]
