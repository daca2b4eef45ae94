"""The attack suite: from inside machine A, with only what A's own processes can reach, try to
get at the platform and at machine B. Every attempt must fail, and A's own work must still work.

Parametrized over providers: each one that isolates machines joins the list. NATS listens on
the docker machines' network gateway (tests/docker_env.py), which local machines reach too.

One stack for the module (tests/attack_stack.py), and one pair of machines per provider for the
tests that leave it as they found it (`pair`); a test that kills A's daemon or archives A makes
a pair of its own (`own_pair`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import secrets
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from contracts.errors import DaemonTimeout, DaemonUnavailable, InvalidParams
from contracts.status import MachineStatus
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from tests.attack_stack import GIT_PASSWORD, GIT_USER, attack_settings, attack_stack, git_server
from tests.docker_env import docker_image, home_of, remove_containers
from tests.gitserver import GitHttpServer
from tests.stop_checks import host_pids_running, unique_sleep
from tests.waiters import wait_until

__all__ = ["docker_image", "remove_containers"]
# remove_containers: the tests run in the Docker engine's lanes (tests/conftest.py); the module's
# stack removes its containers itself (tests/attack_stack.py).
pytestmark = [
    pytest.mark.usefixtures("remove_containers"),
    pytest.mark.asyncio(loop_scope="module"),
]
PROVIDERS = ["local", "docker"]
#: What `fleet up` keeps in the data dir; the test plants them with recognisable values.
DATA_DIR_SECRETS = ("admin-token", "secret-key", "nats-auth.json", "redis-password")


@dataclass
class Pair:
    provider: str
    a: str
    b: str
    b_secret: str
    #: The host paths of the machines' homes (a docker machine's: its volume).
    homes: dict[str, Path]
    #: What holds every machine's home on the host (what machine A must not list).
    homes_root: Path
    #: The interpreter inside the machine.
    python: str

    def home(self, settings: Settings, mid: str) -> Path:
        return self.homes[mid]


async def ready(stack: FleetClient, instance: str, provider: str, repo: str | None = None) -> str:
    inst = await stack.create_instance(instance)
    await stack.set_env("OWN_SECRET", f"{instance}-{secrets.token_hex(8)}", inst.id)
    if repo is not None:
        await stack.add_repo(inst.id, repo, "main", "app", token=GIT_PASSWORD, username=GIT_USER)
    machine = await stack.create_machine(inst.id, provider)  # type: ignore[arg-type]
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=60)
    assert done.status is MachineStatus.READY, done.status_reason
    return machine.id


@pytest.fixture(scope="module")
def settings(
    tmp_path_factory: pytest.TempPathFactory, docker_image: tuple[str, str]
) -> Iterator[Settings]:
    """The module's stack's (tests/attack_stack.py): made once, for every test here. Valkey on a
    TCP port: that machines cannot reach the port `fleet up`'s valkey listens on is what
    `test_valkey_answers_nothing_without_credentials` proves."""
    with attack_settings(tmp_path_factory.mktemp("isolation"), docker_image[0]) as made:
        yield made


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(settings: Settings) -> AsyncIterator[FleetClient]:
    """One stack for the module: no test here stops it, restarts a service or changes its
    settings; each provider's machines are on it."""
    async with attack_stack(settings) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def git_http(
    settings: Settings, docker_image: tuple[str, str]
) -> AsyncIterator[GitHttpServer]:
    """The test repository over HTTP where both kinds of machine reach it."""
    async with git_server(settings, docker_image[0]) as server:
        yield server


@pytest.fixture(scope="module", params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pair(
    provider: str, stack: FleetClient, settings: Settings, git_http: GitHttpServer
) -> Pair:
    """The provider's machines A and B, shared by the tests that leave both as they found them
    for what another test checks: they read, or act inside A where no other test looks (a
    write under a name of their own, a process of their own). Each test plants what it must
    not find, or reads what only the pair's making put there: none is satisfied by what
    another removed."""
    return await make_pair(provider, stack, settings, git_http)


@pytest_asyncio.fixture(loop_scope="module")
async def own_pair(
    pair: Pair, stack: FleetClient, settings: Settings, git_http: GitHttpServer
) -> Pair:
    """`pair` with an A of the test's own, on the module's stack, for a test that kills A's
    daemon or archives A: the shared pair's tests must find A as it was made. B, which such a
    test does not touch, is the shared pair's."""
    return await with_own_a(pair, stack, settings, git_http)


async def with_own_a(
    pair: Pair, stack: FleetClient, settings: Settings, git_http: GitHttpServer
) -> Pair:
    """``pair`` with a new machine A, made as `make_pair` makes it."""
    a = await ready(stack, "alice", pair.provider, git_http.url("repo.git"))
    if pair.provider == "docker":
        home = await home_of(a)
    else:
        home = settings.data_path / "machines" / a / "home"
    return dataclasses.replace(pair, a=a, homes={**pair.homes, a: home})


async def make_pair(
    provider: str, stack: FleetClient, settings: Settings, git_http: GitHttpServer
) -> Pair:
    a, b = await asyncio.gather(
        ready(stack, "alice", provider, git_http.url("repo.git")), ready(stack, "bob", provider)
    )
    b_secret = f"bob-only-{secrets.token_hex(8)}"
    b_inst = (await stack.get_machine(b)).instance_id
    await stack.set_env("BOB_SECRET", b_secret, b_inst)
    await stack.refresh_env(b_inst)
    if provider == "docker":
        homes = {a: await home_of(a), b: await home_of(b)}
        root, python = homes[a].parent.parent, "python3"
    else:
        homes = {m: settings.data_path / "machines" / m / "home" for m in (a, b)}
        root, python = settings.data_path / "machines", sys.executable
    return Pair(provider, a, b, b_secret, homes, root, python)


async def sh(stack: FleetClient, mid: str, script: str, timeout_s: float = 20) -> str:
    result = await stack.exec(mid, ["sh", "-c", script], timeout_s=timeout_s)
    return result.stderr + result.stdout  # stdout last: the attempts end with "done"


async def test_data_dir_secrets_are_out_of_reach(
    stack: FleetClient, settings: Settings, pair: Pair
) -> None:
    """Planted by the test itself, a value of its own, and found on the host just before the
    attempt: what machine A fails to read is there."""
    data = settings.data_path
    planted = f"platform-secret-{secrets.token_hex(8)}"
    data.mkdir(parents=True, exist_ok=True)
    for name in DATA_DIR_SECRETS:
        (data / name).write_text(planted + "\n")
    files = " ".join(str(data / n) for n in DATA_DIR_SECRETS)
    script = f"cat {files}; for f in {files}; do test -e $f && echo FOUND $f; done; echo done"
    assert all((data / n).read_text() == planted + "\n" for n in DATA_DIR_SECRETS)
    out = await sh(stack, pair.a, script)
    assert out.rstrip().endswith("done")  # the attempt ran
    assert planted not in out
    assert "FOUND" not in out


async def test_other_machines_home_and_env_are_out_of_reach(
    stack: FleetClient, settings: Settings, pair: Pair
) -> None:
    b_home = pair.home(settings, pair.b)
    assert pair.b_secret in (b_home / ".fleet" / ".env").read_text()  # it is there to steal
    out = await sh(
        stack,
        pair.a,
        f"cat {b_home}/.fleet/.env; ls {b_home} {pair.homes_root}; "
        # A pattern that does not match itself (A's state file records this command line).
        # /usr is the system, read-only and the same for every machine: skipping it keeps the
        # scan inside its timeout on a loaded host.
        "grep -rsoh 'bob-only-[0-9a-f]*' / --exclude-dir=proc --exclude-dir=sys"
        " --exclude-dir=usr; echo done",
        timeout_s=90,
    )
    assert out.rstrip().endswith("done")
    assert pair.b_secret not in out
    # A cold local machine's home is mounted where it is on the host, alone; a pooled one's
    # is under the pool's directory (test_warm_pool_isolation.py): machines/ is not there.
    if pair.provider == "local" and f"{pair.homes_root}:\n" in out:
        listing = out.split(f"{pair.homes_root}:\n", 1)[1]  # what `ls` shows of machines/
        assert pair.a in listing
        assert pair.b not in listing
    else:  # a container (or a pooled machine) has no host path of any home
        assert f"ls: cannot access '{pair.homes_root}'" in out


async def test_other_daemons_environments_are_out_of_reach(stack: FleetClient, pair: Pair) -> None:
    out = await sh(stack, pair.a, "cat /proc/[0-9]*/environ | tr '\\0' '\\n'; echo done")
    assert out.rstrip().endswith("done")
    assert f"FLEET_MACHINE_ID={pair.a}" in out  # A's own processes: visible, as on any machine
    assert pair.b not in out
    # Only the machine's own processes exist for it: no host process, no platform service.
    pids = await sh(stack, pair.a, "ls /proc | grep -c '^[0-9]'")
    assert int(pids.strip()) < 20, pids


#: Run inside machine A: every way its own processes have at another process's memory.
TOKEN_PROBE = r"""
import hashlib, os, re, sys
found, denied = [], {}
def note(what, exc):
    denied[what] = denied.get(what, 0) + 1
for pid in [p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()]:
    for name in ('environ', 'cmdline'):
        try:
            found.append(open(f'/proc/{pid}/{name}', 'rb').read())
        except OSError as exc:
            note(name, exc)
    try:
        fds = os.listdir(f'/proc/{pid}/fd')
    except OSError as exc:
        fds = []
        note('fd', exc)
    for fd in fds:
        try:
            f = os.open(f'/proc/{pid}/fd/{fd}', os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            continue
        try:
            found.append(os.read(f, 1 << 16))
        except OSError:
            pass
        os.close(f)
    try:
        mem = open(f'/proc/{pid}/mem', 'rb')
        maps = open(f'/proc/{pid}/maps').read().splitlines()
    except OSError as exc:
        note('mem', exc)
        continue
    for line in maps:
        lo, hi = (int(x, 16) for x in line.split()[0].split('-'))
        if 'rw' not in line.split()[1] or hi - lo > 1 << 26:
            continue
        try:
            mem.seek(lo)
            found.append(mem.read(hi - lo))
        except (OSError, ValueError, OverflowError):
            pass
blob = b'\n'.join(found)
print('denied', sorted(denied.items()))
for m in re.finditer(b'FLEET_MACHINE_' + rb'TOKEN=[^\x00\n]*', blob):  # not this text
    print('LEAK', m.group().decode(errors='replace'))
# The token itself, wherever it lies (a 43-character URL-safe word), known by its hash only.
for m in re.finditer(rb'(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])', blob):
    if hashlib.sha256(m.group()).hexdigest() == sys.argv[1]:
        print('LEAK the token itself')
print('done')
"""


async def test_own_daemons_token_is_out_of_reach(
    stack: FleetClient, settings: Settings, own_pair: Pair
) -> None:
    """A's own commands run as A's daemon's user: they must still not get its token, neither
    from /proc/<pid>/environ, cmdline, mem nor an inherited file descriptor of the supervisor,
    the daemon, or whatever started them. A pair of its own: it kills A's daemon."""
    pair = own_pair
    async with Store.of(settings) as store:
        sealed = await store.machine_secret(pair.a)
    assert sealed is not None
    token = SecretBox(settings.secret_key).decrypt(sealed)
    digest = hashlib.sha256(token.encode()).hexdigest()
    script = (
        f"cat > /tmp/probe.py <<'EOF'\n{TOKEN_PROBE}\nEOF\n{pair.python} -I /tmp/probe.py {digest}"
    )
    out = await sh(stack, pair.a, script, timeout_s=60)
    assert out.rstrip().endswith("done"), out[-2000:]
    assert "LEAK" not in out, out[-2000:]
    # A daemon the machine itself kills comes back as a new process: the same for it.
    found: list[int] = []

    async def one_daemon() -> bool:
        found[:] = await own_daemon_pids(stack, pair)
        return len(found) == 1

    # Right after ready a pooled daemon may still be handing over: wait for one, say what was.
    try:
        await wait_until(one_daemon, timeout=30, every=0.3)
    except TimeoutError:
        raise AssertionError(f"not one daemon in the machine: {found}") from None
    [old] = found
    await stack.start_process(pair.a, ["sh", "-c", f"sleep 0.2; kill -9 {old}"], tag="killer")

    async def back() -> bool:
        # A call the old daemon took just before the kill is never answered: a timeout, not
        # a failure of the restart.
        with contextlib.suppress(DaemonUnavailable, DaemonTimeout):
            return await own_daemon_pid(stack, pair, timeout_s=5) not in (0, old)
        return False

    await wait_until(back, timeout=60, every=0.3)  # a restart under load: seconds
    out = await sh(stack, pair.a, script, timeout_s=60)
    assert out.rstrip().endswith("done"), out[-2000:]
    assert "LEAK" not in out, out[-2000:]


async def own_daemon_pid(stack: FleetClient, pair: Pair, timeout_s: float = 20) -> int:
    """The pid of A's daemon as A sees it (the process running ``-m daemon``); 0 unless there
    is exactly one."""
    pids = await own_daemon_pids(stack, pair, timeout_s)
    return pids[0] if len(pids) == 1 else 0


async def own_daemon_pids(stack: FleetClient, pair: Pair, timeout_s: float = 20) -> list[int]:
    """The pids of A's daemons as A sees them."""
    find = (
        "import os\nfor p in os.listdir('/proc'):\n    try: c = open(f'/proc/{p}/cmdline', 'rb')"
        ".read()\n    except OSError: continue\n"
        "    if c.endswith((b'-m\\0daemon\\0', b'/fleet-daemon\\0')) and b'supervise' not in c:"
        " print(p)"
    )
    result = await stack.exec(pair.a, [pair.python, "-I", "-c", find], timeout_s=timeout_s)
    return [int(p) for p in result.stdout.split()]


async def test_valkey_answers_nothing_without_credentials(
    stack: FleetClient, settings: Settings, pair: Pair
) -> None:
    port = urlsplit(settings.redis_url).port
    nats_host = urlsplit(settings.nats_url).hostname  # the one address of the host it reaches
    probe = (
        "import socket\n"
        f"for host in ('127.0.0.1', '{nats_host}'):\n"
        "    try:\n"
        # A connect is answered by a kernel (or pasta), never by valkey: 2 s is ample for one
        # that can connect, and the drop the test expects is waited out once.
        f"        s = socket.create_connection((host, {port}), 2)\n"
        "    except OSError as exc:\n"
        "        print(host, 'unreachable', exc); continue\n"
        "    s.sendall(b'*1\\r\\n$4\\r\\nPING\\r\\n*2\\r\\n$4\\r\\nKEYS\\r\\n$1\\r\\n*\\r\\n')\n"
        "    print(host, s.recv(4096))\n"
    )
    result = await stack.exec(pair.a, [pair.python, "-I", "-c", probe], timeout_s=20)
    # The machine's own loopback (a local machine's network is its own too:
    # providers/sandbox/netns.py); on the gateway valkey does not listen at all.
    assert result.stdout.count("unreachable") == 2, result
    assert "PONG" not in result.stdout
    assert "machine" not in result.stdout


#: Paths that leave the machine's home: absolute, up from it, up from ~, up through a name.
ESCAPES = ("/tmp/pwned", "../../pwned", "~/../pwned", "a/../../pwned")


async def test_write_file_cannot_leave_the_machine(
    stack: FleetClient, settings: Settings, pair: Pair
) -> None:
    """Neither by a path (each of ``ESCAPES``) nor through a link A made to B's home: one pair
    for all of them, as a refused write leaves nothing another attempt could read."""
    machines = settings.data_path / "machines"
    for path in ESCAPES:
        with pytest.raises(InvalidParams) as err:
            await stack.write_file(pair.a, path, "owned")
        assert "home" in str(err.value), path
        assert not (machines / "pwned").exists(), path
        assert not (machines / pair.a / "pwned").exists(), path
    await sh(stack, pair.a, f"ln -s {pair.home(settings, pair.b)} ~/to-bob")
    assert (pair.home(settings, pair.a) / "to-bob").is_symlink()  # the way out is there
    with pytest.raises(InvalidParams):
        await stack.write_file(pair.a, "~/to-bob/planted", "owned")
    assert not (pair.home(settings, pair.b) / "planted").exists()


async def test_setsid_does_not_outlive_an_exec_timeout_nor_archive(
    stack: FleetClient, own_pair: Pair
) -> None:
    """A process that leaves its session (setsid) ends with the command that timed out, and
    with its machine archived: one pair of its own (it archives A), the archive last."""
    pair = own_pair
    escapee = unique_sleep()
    script = f"setsid {' '.join(escapee)} & sleep 0.3; ls /proc >/dev/null; sleep 60"
    result = await stack.exec(pair.a, ["sh", "-c", script], timeout_s=2)
    assert result.timed_out
    await wait_until(lambda: not host_pids_running(escapee), timeout=5)

    escapee = unique_sleep()
    proc = await stack.start_process(pair.a, ["setsid", *escapee], tag="escapee")
    assert proc.pid
    await wait_until(lambda: bool(host_pids_running(escapee)), timeout=5)
    await stack.archive_machine(pair.a)
    await wait_until(lambda: not host_pids_running(escapee), timeout=10)


async def test_own_work_still_works(stack: FleetClient, settings: Settings, pair: Pair) -> None:
    home = pair.home(settings, pair.a)
    assert (await stack.exec(pair.a, ["echo", "hi"])).stdout == "hi\n"
    await stack.write_file(pair.a, "~/notes/today.txt", "mine")
    assert (home / "notes" / "today.txt").read_text() == "mine"
    assert (await stack.exec(pair.a, ["cat", "README"], cwd="app")).stdout == "main\n"  # cloned
    env = await sh(stack, pair.a, "cat ~/.fleet/.env")
    assert "OWN_SECRET='alice-" in env
    assert "FLEET_MACHINE_TOKEN" not in await sh(stack, pair.a, "env")
    bg = await stack.start_process(pair.a, ["sh", "-c", "echo started; sleep 300"], tag="bg")
    listed = await stack.list_processes(pair.a)
    assert [p.tag for p in listed if p.pid == bg.pid] == ["bg"]
    tmp = await sh(stack, pair.a, "echo x > /tmp/t && cat /tmp/t && touch /usr/x 2>&1; echo $?")
    assert tmp.startswith("x\n")
    assert "Read-only" in tmp or "Permission denied" in tmp  # a uid of its own: both hold


async def test_a_machine_runs_as_a_uid_of_its_own(
    stack: FleetClient, settings: Settings, pair: Pair
) -> None:
    uids = [int(await sh(stack, m, "id -u")) for m in (pair.a, pair.b)]
    assert 0 not in uids  # never root, with or without capabilities
    # No capability to be had back either, not even from a file's (the bounding set is empty).
    caps = await sh(stack, pair.a, "grep -E '^Cap(Prm|Eff|Bnd|Amb)' /proc/self/status")
    assert {line.split()[1] for line in caps.splitlines()} == {"0000000000000000"}, caps
    assert uids[0] != uids[1]  # and nobody else's: each machine its own
    docker = pair.provider == "docker"
    lo, hi = (settings.docker_uid_range if docker else settings.sandbox_uid_range) or (0, 0)
    assert all(lo <= u <= hi for u in uids)
    if docker:  # its home is its volume, not a path of the data dir
        return
    assert pair.home(settings, pair.a).stat().st_uid == uids[0]
    # What only root may do is not A's: its home is A's, nothing else is.
    out = await sh(stack, pair.a, "kill -0 1 2>&1; touch /etc/x 2>&1; echo done")
    assert "Operation not permitted" in out
    assert out.rstrip().endswith("done")
