"""A machine's network is its own, in both providers: from inside machine A, B's loopback
servers and the host's loopback services (valkey, the gateway, metrics) are out of reach; two
machines serve 127.0.0.1:3000 each; the outside network (a host the test makes in a network
namespace of its own) answers HTTP and git; no nested user namespace; Docker's denied syscalls
answer EPERM.

NATS listens on the docker machines' network gateway (tests/docker_env.py): local machines
reach it through pasta as the host would, containers through their bridge. The forwarded
loopback port (NATS on the host's loopback, as `fleet up` runs it) is what every other local
test uses.

One stack for the module (tests/attack_stack.py) and one pair of machines per provider, shared by
its tests: each adds to A or B only what no other test here looks for (its own server on port
3000, a clone in a directory of its own), and each attempt that must fail is against a port the
test itself shows open, or a syscall, never against something another test took away.
"""

from __future__ import annotations

import asyncio
import errno
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from bench.outside import Outside, outside_host
from contracts.status import MachineStatus
from controlplane.process.metrics import Metrics, MetricsServer
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.attack_stack import attack_settings, attack_stack
from tests.docker_env import docker_image, remove_containers
from tests.syscall_probe import DENIED, PROBE

__all__ = ["docker_image", "remove_containers"]
# remove_containers: the tests run in the Docker engine's lanes (tests/conftest.py); the module's
# stack removes its containers itself (tests/attack_stack.py).
pytestmark = [
    pytest.mark.usefixtures("remove_containers"),
    pytest.mark.asyncio(loop_scope="module"),
]
PROVIDERS = ["local", "docker"]
PORT = 3000


@dataclass
class Pair:
    provider: str
    a: str
    b: str


async def ready(stack: FleetClient, name: str, provider: str) -> str:
    inst = await stack.create_instance(name)
    machine = await stack.create_machine(inst.id, provider)  # type: ignore[arg-type]
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=60)
    assert done.status is MachineStatus.READY, done.status_reason
    return machine.id


@pytest.fixture(scope="module")
def settings(
    tmp_path_factory: pytest.TempPathFactory, docker_image: tuple[str, str]
) -> Iterator[Settings]:
    """The module's stack's (tests/attack_stack.py). Valkey on a TCP port of the host's
    loopback, as `fleet up`'s (the worker's listens on a unix socket only): that machines
    cannot reach it is what this module proves."""
    with attack_settings(tmp_path_factory.mktemp("network-isolation"), docker_image[0]) as made:
        yield made


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(settings: Settings) -> AsyncIterator[FleetClient]:
    """One stack for the module: no test here stops it, restarts a service or changes its
    settings; each provider's machines are on it."""
    async with attack_stack(settings) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=PROVIDERS)
async def pair(request: pytest.FixtureRequest, stack: FleetClient) -> Pair:
    """The provider's machines A and B, shared by the module's tests (the module's docstring
    says why that is safe)."""
    a, b = await asyncio.gather(
        ready(stack, "alice", request.param), ready(stack, "bob", request.param)
    )
    return Pair(request.param, a, b)


async def py(stack: FleetClient, mid: str, code: str, timeout_s: float = 30) -> str:
    """Run ``code`` with the machine's python3; its stdout (it must succeed)."""
    result = await stack.exec(mid, ["python3", "-c", code], timeout_s=timeout_s)
    assert result.exit_code == 0, result.stderr
    return result.stdout


#: What connecting to each (host, port) gives, from inside a machine: the page read, or the
#: error's class name. Retried until READY_S for the machine's own server to come up.
#: One attempt at each (host, port) of argv[1], all at once: a dropped one waits out its
#: timeout, and the attempts need not wait them out one after another.
CONNECT = """
import json, socket, sys
from concurrent.futures import ThreadPoolExecutor

def attempt(target):
    try:
        socket.create_connection(tuple(target), timeout=3).close()
        return "connected"
    except OSError as exc:
        return type(exc).__name__

targets = json.loads(sys.argv[1])
with ThreadPoolExecutor(len(targets)) as pool:
    seen = list(pool.map(attempt, targets))
print(json.dumps({f"{host}:{port}": got for (host, port), got in zip(targets, seen)}))
"""

OWN_PAGE = f"""
import sys, time, urllib.request
deadline = time.monotonic() + 20
while True:
    try:
        page = urllib.request.urlopen("http://127.0.0.1:{PORT}/whoami.txt", timeout=3)
        print(page.read().decode())
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.05)
"""


async def serve_own_page(stack: FleetClient, mid: str) -> None:
    """A web server on the machine's 127.0.0.1:3000, serving its id (in a directory of its
    /tmp), and wait for it from inside."""
    own = f"/tmp/www-{secrets.token_hex(4)}"
    result = await stack.exec(mid, ["sh", "-c", f"mkdir -p {own} && echo {mid} > {own}/whoami.txt"])
    assert result.exit_code == 0, result.stderr
    await stack.start_process(
        mid, ["python3", "-m", "http.server", str(PORT), "--bind", "127.0.0.1"], cwd=own
    )


async def connect_from(
    stack: FleetClient, mid: str, targets: list[tuple[str, int]]
) -> dict[str, str]:
    result = await stack.exec(mid, ["python3", "-c", CONNECT, json.dumps(targets)], timeout_s=60)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


@pytest_asyncio.fixture(loop_scope="module")
async def metrics_port() -> AsyncIterator[int]:
    """A metrics endpoint on the host's loopback, as each service serves one."""
    async with MetricsServer(Metrics(process=False), "127.0.0.1", 0) as server:
        yield server.port


async def test_each_machine_serves_its_own_loopback_port(stack: FleetClient, pair: Pair) -> None:
    await serve_own_page(stack, pair.b)
    assert (await py(stack, pair.b, OWN_PAGE)).strip() == pair.b
    # A has no server on 3000: B's is not there for it.
    seen = await connect_from(stack, pair.a, [("127.0.0.1", PORT)])
    assert seen == {f"127.0.0.1:{PORT}": "ConnectionRefusedError"}, seen
    # A binds the same port (no "Address already in use") and reads its own page.
    await serve_own_page(stack, pair.a)
    assert (await py(stack, pair.a, OWN_PAGE)).strip() == pair.a
    assert (await py(stack, pair.b, OWN_PAGE)).strip() == pair.b


async def test_the_hosts_loopback_services_are_out_of_reach(
    stack: FleetClient,
    settings: Settings,
    pair: Pair,
    metrics_port: int,
    docker_image: tuple[str, str],
) -> None:
    valkey = urlsplit(settings.redis_url).port
    assert valkey is not None  # on TCP (tests/attack_stack.py)
    ports = {"valkey": valkey, "gateway": settings.port, "metrics": metrics_port,
             "previews": settings.preview_port}  # fmt: skip
    # The host's loopback, and this host's address on the machines' bridge.
    gateway = docker_image[0]
    targets = [(host, port) for host in ("127.0.0.1", gateway) for port in ports.values()]
    seen = await connect_from(stack, pair.a, targets)
    assert len(seen) == len(targets)
    assert "connected" not in seen.values(), seen
    # The same ports are open on the host: the attempt could have succeeded.
    for port in ports.values():
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()


@pytest.fixture
def outside(tmp_path: Path, bare_repo: Path) -> Iterator[Outside]:
    with outside_host(tmp_path / "outside", repo=bare_repo) as host:
        yield host


async def test_the_outside_network_answers_http_and_git(
    stack: FleetClient, pair: Pair, outside: Outside
) -> None:
    page = (outside.root / "page.txt").read_text()
    fetch = f"import urllib.request as u; print(u.urlopen({outside.url('page.txt')!r}).read())"
    got = await py(stack, pair.a, fetch)
    assert got.strip() == repr(page.encode())
    where = secrets.token_hex(4)  # a directory of its own in the shared machine
    clone = await stack.exec(
        pair.a,
        [
            "sh",
            "-c",
            f"git clone -q {outside.url('repo.git')} /tmp/outside-clone-{where} && "
            f"git -C /tmp/outside-clone-{where} log --oneline | wc -l",
        ],
        timeout_s=60,
    )
    assert clone.exit_code == 0, clone.stderr
    assert int(clone.stdout.strip()) >= 1


async def test_no_nested_user_namespace_and_dockers_denied_syscalls(
    stack: FleetClient, pair: Pair
) -> None:
    unshare = await stack.exec(pair.a, ["unshare", "-r", "true"])
    assert unshare.exit_code != 0, unshare
    found = json.loads(await py(stack, pair.a, PROBE))
    assert {name: found[name] for name in DENIED} == dict.fromkeys(DENIED, errno.EPERM), found
    assert found["getpid"] == 0
    assert found["unshare -r true"] != 0
