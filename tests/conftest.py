"""Fixtures: real servers on ports they bind and report, real daemon processes, real git
repositories.

Each pytest process (each xdist worker) runs one nats-server (JetStream on) and one valkey,
shared by its tests, each test in a namespace of its own that is emptied after it
(tests/shared_servers.py). A test that stops, kills or restarts a server takes one of its own.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import structlog

from contracts.ids import new_machine_id
from controlplane.bus import Bus
from controlplane.security.crypto import generate_secret_key
from controlplane.settings import DEFAULT_PREFIX, Settings
from controlplane.store import Store
from fleet.client import FleetClient
from fleet.up.embedded import NatsServer, PortHold, ValkeyServer
from providers.local import daemon_argv, homes as homes_fs, stop_all_local
from providers.swarm import stop_all_swarm
from tests import leftovers, provider_param
from tests.gitcmd import git
from tests.leak_hooks import (  # noqa: F401 - hooks
    pytest_runtest_makereport,
    pytest_runtest_teardown,
    track_subprocesses,
)
from tests.oidc_provider import oidc_issuer  # noqa: F401 - one for all modules, once per worker
from tests.shared_servers import TEST_AUDIT_MAX_BYTES, WorkerServers

try:  # pytest-xdist (a dev dependency); without it the suite runs in one process
    from tests import xdist_groups
except ImportError:
    xdist_groups = None  # type: ignore[assignment]

ADMIN_TOKEN = "test-admin-token-0123456789"
MACHINE_TOKEN = "test-machine-token"

#: Fixtures of tests on the Docker engine (tests/docker_env.py). Each test's containers and
#: volumes are its own stack's (``remove_containers`` removes only those), but a machine on the
#: engine costs far more than one in a sandbox: under xdist (``./run test``) such tests run in
#: ``DOCKER_LANES`` lanes, each on one worker, one test at a time (``--dist loadgroup``), a module
#: whole in one lane, while the other workers run the rest.
DOCKER_FIXTURES = frozenset({"docker_image", "remove_containers"})
DOCKER_LANES = 2


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Groups tests by what they share, from their fixtures: a test added later that uses the
    Docker engine's fixtures is grouped with no mark of its own."""
    for item in items:
        if uses_docker(item):
            lane = zlib.crc32(item.nodeid.split("::", 1)[0].encode()) % DOCKER_LANES
            item.add_marker(pytest.mark.xdist_group(f"docker-{lane}"))
        elif item.get_closest_marker("xdist_group") is not None:
            continue  # a group of its own choosing (modules sharing a build): the item's mark
            # would be the closest, overriding it
        elif (module := shared_fixture_module(item)) is not None:
            item.add_marker(pytest.mark.xdist_group(module))
    if xdist_groups is not None:
        xdist_groups.record_groups(config, items)


def uses_docker(item: pytest.Item) -> bool:
    """A test on the Docker engine: it takes its fixtures, or it is the ``docker`` case of a
    test that takes the provider as a parameter (tests/provider_param.py), which takes them
    at run time."""
    if DOCKER_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    params = getattr(getattr(item, "callspec", None), "params", {})
    return bool(params.get(provider_param.PARAM) == provider_param.DOCKER)


def shared_fixture_module(item: pytest.Item) -> str | None:
    """The module of a test using a fixture made once per module or class (a whole `fleet up`
    for test_cli.py's tests): its tests run on one worker, so that it is made once, not once
    per worker."""
    info = getattr(item, "_fixtureinfo", None)
    for defs in info.name2fixturedefs.values() if info else ():
        if any(d.scope in ("module", "class", "package") for d in defs):
            return item.nodeid.split("::", 1)[0]
    return None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    if xdist_groups is not None:
        xdist_groups.configure_node(node)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if xdist_groups is not None and config.getvalue("dist") == "loadgroup":
        return xdist_groups.GroupScheduling(config, log)
    return None


@pytest.hookimpl(hookwrapper=True, optionalhook=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> Iterator[None]:
    """A test (or its teardown) that times out prints what each of its asyncio tasks was
    awaiting: pytest-timeout's own report shows only the event loop's select."""
    yield
    timed_out = signal.getsignal(signal.SIGALRM)
    if not callable(timed_out):
        return

    def report_tasks(signum: int, frame: Any) -> None:
        loop = asyncio._get_running_loop()
        for task in asyncio.all_tasks(loop) if loop is not None else ():
            print(f"--- task {task.get_name()}, awaiting:", file=sys.stderr)
            task.print_stack(limit=12, file=sys.stderr)
        timed_out(signum, frame)

    signal.signal(signal.SIGALRM, report_tasks)


def pytest_configure(config: pytest.Config) -> None:
    plain_tracebacks()
    track_subprocesses()


def plain_tracebacks() -> None:
    """structlog's configuration, in-process services' logs included, with plain tracebacks:
    its default formats a logged exception with rich, every frame's locals included, at tens of
    milliseconds each (a fast test of an internal error logs several)."""
    processors = [
        structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        if isinstance(p, structlog.dev.ConsoleRenderer) else p
        for p in structlog.get_config()["processors"]
    ]  # fmt: skip
    structlog.configure(processors=processors)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--leftovers-settle-s", type=float, default=leftovers.SETTLE_S,
        help="how long what the session's teardowns signalled may take to end before the "
        "session fails naming it (tests/leftovers.py)",
    )  # fmt: skip


#: When each test ran, from the reports the controller sees: who started a leftover process.
_WINDOWS = leftovers.Windows()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _WINDOWS.add(report)


@pytest.hookimpl(trylast=True)  # on the controller, after xdist's (its workers have ended)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Fail the session if anything it made outlives it (tests/leftovers.py), naming each."""
    if hasattr(session.config, "workerinput"):  # an xdist worker: the controller looks
        return
    factory: pytest.TempPathFactory = session.config._tmp_path_factory  # type: ignore[attr-defined]
    found = leftovers.find(
        factory.getbasetemp(), session.config.getoption("leftovers_settle_s"), _WINDOWS
    )
    if found:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = "\n  ".join(found)
        text = f"this session left behind ({len(found)}):\n  {lines}"
        if reporter is not None:
            reporter.write_sep("=", "leftovers", red=True)
            reporter.write_line(text)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    if xdist_groups is not None:
        xdist_groups.remove_groups_dir(config)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty machine home for tests that run daemon parts in-process."""
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.fixture(scope="session")
def worker_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerServers]:
    """This process's nats-server and valkey, started when a test first takes one."""
    with WorkerServers(tmp_path_factory.mktemp("servers")) as servers:
        yield servers


@pytest.fixture
def nats_server(worker_servers: WorkerServers) -> Iterator[NatsServer]:
    """The worker's nats-server, the test's alone while it runs; after it, every stream is
    deleted and no client of it may still be connected (tests/shared_servers.py). It refuses
    ``stop``, ``kill`` and ``start``: a test that needs them takes `own_nats_server`."""
    with worker_servers.lend_nats() as server:
        yield server


@pytest.fixture
def key_prefix(worker_servers: WorkerServers) -> str:
    """The prefix of the test's keys (``FLEET_KEY_PREFIX`` of `settings`), its own."""
    return worker_servers.new_prefix()


@pytest.fixture
def redis_server(worker_servers: WorkerServers, key_prefix: str) -> Iterator[ValkeyServer]:
    """The worker's valkey, on which the test keeps to its `key_prefix`; after it, its keys are
    deleted, and no other key and no client of it may be left (tests/shared_servers.py). It
    refuses ``stop``, ``kill`` and ``start``: a test that needs them takes `own_redis_server`."""
    with worker_servers.valkey_namespace(key_prefix) as server:
        yield server


@pytest.fixture
def own_nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of the test's own, for a test that stops, kills or restarts it (a bus
    outage): the worker's is shared by its other tests. A module takes it by a ``nats_server``
    fixture of its own that returns it and says why."""
    with NatsServer(tmp_path / "nats") as server:
        yield server


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[ValkeyServer]:
    """A valkey of the test's own, for a test that stops, pauses or restarts it (a store
    outage); taken as `own_nats_server` is. On a unix socket, as the worker's is: a restart
    listens on the same path again."""
    # With a password, as fleet up runs it: nothing of the state is served without it.
    with ValkeyServer(tmp_path / "redis", password=secrets.token_urlsafe(16), unix=True) as server:
        yield server


@pytest.fixture
def tcp_redis_server(tmp_path: Path) -> Iterator[ValkeyServer]:
    """A valkey of the test's own on a TCP port of the loopback, for a test about who can
    reach that port (a machine must not): the worker's listens on a unix socket only. A module
    takes it by a ``redis_server`` fixture of its own that returns it."""
    with ValkeyServer(tmp_path / "redis", password=secrets.token_urlsafe(16)) as server:
        yield server


@pytest.fixture
def settings(
    tmp_path: Path, nats_server: NatsServer, redis_server: ValkeyServer, key_prefix: str
) -> Iterator[Settings]:
    """The gateway's ports are held for the test (`PortHold`): tests name them before a
    gateway runs (in this process, or as a process of its own from ``to_env``), and a gateway
    restarted within the test binds them again."""
    with held_settings(tmp_path, nats_server, redis_server, key_prefix) as made:
        yield made


@contextmanager
def held_settings(
    tmp_path: Path, nats_server: NatsServer, redis_server: ValkeyServer,
    key_prefix: str = DEFAULT_PREFIX,
) -> Iterator[Settings]:  # fmt: skip
    """The test settings (`make_settings`) on the gateway's three ports (its console's, its
    previews', its E2B front's), held while they are used."""
    with PortHold() as console, PortHold() as previews, PortHold() as e2b:
        yield make_settings(tmp_path, nats_server, redis_server, console.port, previews.port,
                            key_prefix, e2b.port)  # fmt: skip


def make_settings(
    tmp_path: Path, nats_server: NatsServer, redis_server: ValkeyServer, port: int, preview: int,
    key_prefix: str = DEFAULT_PREFIX, e2b: int = 0,
) -> Settings:  # fmt: skip
    return Settings(
        nats_url=nats_server.url,
        redis_url=redis_server.url,
        key_prefix=key_prefix,
        data_dir=str(tmp_path / "data"),
        secret_key=generate_secret_key(),
        admin_token=ADMIN_TOKEN,
        port=port,
        preview_port=preview,
        e2b_port=e2b,
        log_level="warning",
        ack_wait_s=5.0,
        probe_timeout_s=10.0,
        probe_interval_s=0.1,
        clone_timeout_s=30.0,
        # The egress proxy's door for gvisor machines is one per host: a test that needs it
        # gives its stack a port of its own (tests/integration/test_gvisor_secrets.py).
        secrets_proxy_port=0,
        # Sandboxed machines see the test's repository and git shim (and nothing else of it).
        sandbox_share=f"{tmp_path / 'repo.git'}:{tmp_path / 'shim'}",
        audit_max_bytes=TEST_AUDIT_MAX_BYTES,
    )


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    async with Store.of(settings) as s:
        yield s


@pytest.fixture
async def bus(settings: Settings) -> AsyncIterator[Bus]:
    async with Bus(settings, name="test") as b:
        yield b


@dataclass
class DaemonProc:
    machine_id: str
    home: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


SpawnDaemon = Callable[..., DaemonProc]


@pytest.fixture
def spawn_daemon(tmp_path: Path, nats_server: NatsServer) -> Iterator[SpawnDaemon]:
    """Start real fleet-daemon processes; all are killed (with their children) at teardown."""
    started: list[DaemonProc] = []

    def spawn(machine_id: str | None = None, **env: str) -> DaemonProc:
        mid = machine_id or new_machine_id()
        home = tmp_path / "machines" / mid / "home"
        home.mkdir(parents=True, exist_ok=True)
        log = home.parent / "daemon.log"
        full_env = {
            "PATH": os.environ["PATH"],
            "HOME": str(home),
            "FLEET_NATS_URL": nats_server.url,
            "FLEET_MACHINE_ID": mid,
            "FLEET_MACHINE_TOKEN": MACHINE_TOKEN,
            "FLEET_LOG_LEVEL": "debug",
            **env,
        }
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                daemon_argv(),
                env=full_env,
                cwd=home,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        d = DaemonProc(mid, home, proc, log)
        started.append(d)
        return d

    yield spawn
    for d in started:
        with suppress(ProcessLookupError):
            os.killpg(d.proc.pid, signal.SIGKILL)
        d.proc.wait()
        kill_leftovers(d.home)
        # Captured: pytest shows it with a failing test's report, and only then.
        with suppress(OSError):
            print(f"--- daemon {d.machine_id}, exit {d.proc.returncode}, its log's end:")
            print("\n".join(d.output().splitlines()[-40:]))


def kill_leftovers(home: Path) -> None:
    """A daemon that handed over left a successor (another session), and background processes
    outlive their daemon by design: end whatever the state file and the lock still name."""
    from base import procinfo
    from base.lockfile import holder_pid
    from daemon.supervision import commands
    from daemon.supervision.state import load_state

    if (pid := holder_pid(home)) is not None:
        with suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while procinfo.state(pid) not in (None, "Z") and time.monotonic() < deadline:
            time.sleep(0.01)
    state = load_state(home)
    for p in state.processes if state else []:
        commands.end_process(p, grace_s=0.5)


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    """The settings the in-process stack runs with; a test module overrides this to tune it."""
    return settings


@pytest.fixture
async def stack(stack_settings: Settings) -> AsyncIterator[FleetClient]:
    """Every service, wired exactly as its __main__ does, in this process; a client to it."""
    async with running_stack(stack_settings) as client:
        yield client


@asynccontextmanager
async def running_stack(settings: Settings) -> AsyncIterator[FleetClient]:
    """Every service on ``settings``, wired exactly as its __main__ does, in this process; a
    client to it. Its machines are stopped and their homes unmounted when it ends."""
    from services.gateway.__main__ import build as gateway
    from services.prober.__main__ import build as prober
    from services.provisioner.__main__ import build as provisioner
    from services.setup_pusher.__main__ import build as setup_pusher

    async with AsyncExitStack() as es:
        es.callback(homes_fs.unmount, settings.data_path)  # last: its machines stopped
        es.callback(stop_all_local, settings.data_path)
        es.callback(stop_all_swarm, settings.data_path)
        for build in (provisioner, setup_pusher, prober, gateway):
            await build(settings, es)
        client = FleetClient(f"http://127.0.0.1:{settings.port}", ADMIN_TOKEN, timeout_s=30)
        es.push_async_callback(client.close)
        yield client


#: ``await ready_machine(name)``: the id of a new machine on the module's shared stack, ready.
ReadyMachine = Callable[[str], Awaitable[str]]


async def new_ready_machine(
    client: FleetClient, name: str, created: Callable[[str], object] = lambda _: None
) -> str:
    """A new machine in a new instance ``name``, awaited ready (a failed one fails at once);
    ``created`` is told its id as soon as it exists."""
    inst = await client.create_instance(name)
    machine = await client.create_machine(inst.id)
    created(machine.id)
    got = await client.wait_for(machine.id, ["ready", "failed"], timeout_s=60)
    assert got.status == "ready", got
    return machine.id


@pytest.fixture(scope="module")
def shared_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """The settings of `shared_stack`: its own NATS and valkey, made once per module."""
    tmp = tmp_path_factory.mktemp("shared")
    with (
        NatsServer(tmp / "nats") as nats,
        ValkeyServer(tmp / "redis", password=secrets.token_urlsafe(16), unix=True) as redis,
        held_settings(tmp, nats, redis) as made,
    ):
        yield made


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_stack(shared_settings: Settings) -> AsyncIterator[FleetClient]:
    """One stack (`running_stack`) for a whole module, for tests that only need a ready machine
    of their own (`ready_machine`) and only read from it or act inside it: never one that
    stops, restarts or archives a machine, kills a daemon, or changes the platform's settings,
    environment or policies (those take `stack`). Its tests run in the module's event loop:
    the module says ``pytestmark = pytest.mark.asyncio(loop_scope="module")``."""
    async with running_stack(shared_settings) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def ready_machine(shared_stack: FleetClient) -> AsyncIterator[ReadyMachine]:
    """A factory of ready machines on `shared_stack`, each in a new instance; they are archived
    when the module ends."""
    made: list[str] = []

    async def ready(name: str) -> str:
        return await new_ready_machine(shared_stack, name, made.append)

    yield ready
    for mid in made:
        await shared_stack.archive_machine(mid)
    for mid in made:
        await shared_stack.wait_for(mid, ["archived"], timeout_s=60)


@dataclass
class CloneLog:
    """Every `git clone` a daemon ran, as "<HOME> <args>" lines, via a shim first on PATH. Each
    machine logs in its own home (a sandboxed machine can write nowhere else)."""

    root: Path

    def homes(self) -> list[str]:
        return [
            line.split(" ", 1)[0]
            for log in sorted(self.root.rglob(CLONE_LOG_NAME))
            for line in log.read_text().splitlines()
        ]

    def text(self) -> str:
        return "".join(log.read_text() for log in sorted(self.root.rglob(CLONE_LOG_NAME)))


CLONE_LOG_NAME = ".test-clones.log"


@pytest.fixture
def clone_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CloneLog:
    """Daemons started after this (they inherit PATH) log each clone they run."""
    real_git = shutil.which("git")
    assert real_git is not None
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    log = CloneLog(tmp_path)
    shim = shim_dir / "git"
    shim.write_text(
        "#!/bin/sh\n"
        f'case " $* " in *" clone "*) echo "$HOME $*" >> "$HOME/{CLONE_LOG_NAME}" ;; esac\n'
        f'exec "{real_git}" "$@"\n'
    )
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim_dir}:{os.environ['PATH']}")
    return log


@pytest.fixture
def bare_repo(tmp_path: Path) -> Path:
    """A bare repository whose default branch is `main` and which also has `feature`,
    carrying a file `feature.txt` that `main` does not have."""
    return make_bare_repo(tmp_path)


def make_bare_repo(tmp_path: Path) -> Path:
    """``tmp_path/repo.git``, as `bare_repo` describes it."""
    work = tmp_path / "repo-work"
    git("init", "-q", "-b", "main", str(work))
    (work / "README").write_text("main\n")
    git("add", "README", cwd=work)
    git("commit", "-q", "-m", "main", cwd=work)
    git("checkout", "-q", "-b", "feature", cwd=work)
    (work / "feature.txt").write_text("on feature\n")
    git("add", "feature.txt", cwd=work)
    git("commit", "-q", "-m", "feature", cwd=work)
    git("checkout", "-q", "main", cwd=work)
    bare = tmp_path / "repo.git"
    git("clone", "-q", "--bare", str(work), str(bare))
    return bare
