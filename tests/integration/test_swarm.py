"""The swarm provider: many real daemons in one host process, driven through the whole stack."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nats.errors
import pytest

from contracts.bus import subjects
from contracts.ids import new_machine_id
from contracts.status import MachineStatus
from controlplane.bus import Bus
from controlplane.settings import Settings
from fleet.client import FleetClient
from fleet.up import NatsServer
from providers.swarm import (
    HOST_SIZE_VAR,
    SwarmProvider,
    running_host_pid,
    stop_all_swarm,
    swarm_root,
)
from tests.waiters import wait_until

HOST_SIZE = 8


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """With its monitoring port: these tests count the daemons' connections (/connz)."""
    with NatsServer(tmp_path / "nats", monitor=True) as server:
        yield server


@pytest.fixture(autouse=True)
def swarm_hosts(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Small hosts, so machines spread over several; no host outlives the test (set up before
    the stack, so this teardown runs after the stack's)."""
    monkeypatch.setenv(HOST_SIZE_VAR, str(HOST_SIZE))
    yield
    stop_all_swarm(settings.data_path, grace_s=10)
    hosts = swarm_root(settings.data_path) / "hosts"
    if hosts.is_dir():
        assert [d.name for d in hosts.iterdir() if running_host_pid(d) is not None] == []


def host_pids(settings: Settings) -> dict[str, int]:
    hosts = swarm_root(settings.data_path) / "hosts"
    pids = {d.name: running_host_pid(d) for d in hosts.iterdir()} if hosts.is_dir() else {}
    return {name: pid for name, pid in pids.items() if pid is not None}


def daemon_connections(nats: NatsServer) -> set[str]:
    url = f"http://127.0.0.1:{nats.monitor_port}/connz?limit=4096"
    with urllib.request.urlopen(url, timeout=5) as resp:
        conns = json.load(resp)["connections"]
    return {c["name"] for c in conns if c.get("name", "").startswith("daemon:")}


async def create_swarm_machines(stack: FleetClient, n: int) -> list[str]:
    instances = await asyncio.gather(*(stack.create_instance(f"swarm-{i}") for i in range(n)))
    machines = await asyncio.gather(*(stack.create_machine(i.id, "swarm") for i in instances))
    ready = await asyncio.gather(
        *(stack.wait_for(m.id, {"ready", "failed"}, timeout_s=60) for m in machines)
    )
    assert [m.status for m in ready] == [MachineStatus.READY] * n, [
        m.status_reason for m in ready if m.status is not MachineStatus.READY
    ]
    return [m.id for m in machines]


async def test_twenty_swarm_machines_become_ready_and_run_commands(
    stack: FleetClient, settings: Settings, nats_server: NatsServer
) -> None:
    await stack.set_env("GREETING", "hello swarm")
    ids = await create_swarm_machines(stack, 20)

    # 20 machines in hosts of 8: three host processes, each daemon with its own connection.
    pids = host_pids(settings)
    assert sorted(pids) == ["host-0", "host-1", "host-2"]
    assert daemon_connections(nats_server) >= {f"daemon:{mid}" for mid in ids}
    external = {(await stack.get_machine(mid)).external_id for mid in ids}
    assert external == {f"swarm:{name}:{pid}" for name, pid in pids.items()}

    async def check(mid: str) -> None:
        home = swarm_root(settings.data_path) / "machines" / mid / "home"
        r = await stack.exec(mid, ["sh", "-c", 'pwd; echo "$HOME $FLEET_MACHINE_ID"; env'])
        pwd, ids_line, *env = r.stdout.splitlines()
        assert r.exit_code == 0, r.stderr
        assert (pwd, ids_line) == (str(home), f"{home} {mid}")
        assert not [line for line in env if line.startswith(("FLEET_MACHINE_TOKEN", "FLEET_SWARM"))]
        cat = await stack.exec(mid, ["cat", ".fleet/.env"])
        assert "GREETING='hello swarm'" in cat.stdout
        written = await stack.write_file(mid, "notes/hi.txt", mid)
        assert (home / "notes" / "hi.txt").read_text() == mid
        assert written.path == str(home / "notes" / "hi.txt")

    await asyncio.gather(*(check(mid) for mid in ids))


async def test_archive_stops_one_instance_and_leaves_the_others(
    stack: FleetClient, settings: Settings, bus: Bus
) -> None:
    ids = await create_swarm_machines(stack, 3)
    pids_before = host_pids(settings)
    gone, *kept = ids

    await stack.archive_machine(gone)

    async def unavailable() -> bool:
        return not await _serving(bus, gone)

    await wait_until(unavailable, timeout=15, every=0.1)
    for mid in kept:
        assert (await stack.exec(mid, ["true"])).exit_code == 0
        assert (await stack.get_machine(mid)).status is MachineStatus.READY
    assert host_pids(settings) == pids_before  # the host process itself was not touched


async def test_provider_is_idempotent_and_finds_its_hosts_after_a_restart(
    settings: Settings, bus: Bus
) -> None:
    env = {"PATH": os.environ["PATH"], HOST_SIZE_VAR: "2"}
    first = SwarmProvider(data_dir=settings.data_path, nats_url=settings.nats_url, environ=env)
    a, b, c = (new_machine_id() for _ in range(3))
    ext_a = await first.start(a, "token-a")
    assert await first.start(a, "token-a") == ext_a  # a redelivered machine.created
    ext_b = await first.start(b, "token-b")
    ext_c = await first.start(c, "token-c")
    assert ext_a == ext_b != ext_c  # two per host
    for mid in (a, b, c):
        await wait_until(lambda m=mid: _serving(bus, m), timeout=15, every=0.1)

    # A restarted provisioner (new provider object) finds the running machines where they are.
    again = SwarmProvider(data_dir=settings.data_path, nats_url=settings.nats_url, environ=env)
    assert await again.start(c, "token-c") == ext_c
    assert sorted(host_pids(settings)) == ["host-0", "host-1"]
    await again.stop(b)
    await again.stop(b)  # idempotent
    assert not await _serving(bus, b)
    assert await _serving(bus, a)
    # The freed slot is reused instead of starting a third host.
    assert await again.start(new_machine_id(), "token-d") == ext_a

    assert stop_all_swarm(settings.data_path, grace_s=10) == 2
    assert host_pids(settings) == {}
    for mid in (a, c):
        assert not await _serving(bus, mid)


async def _serving(bus: Bus, machine_id: str) -> bool:
    """Whether a daemon serves the machine's RPC subject at all (any answer counts, even a
    refusal: this is about the instance being up, not about what it accepts)."""
    try:
        await bus.nc.request(subjects.daemon_rpc(machine_id), b"{}", timeout=5)
    except nats.errors.NoRespondersError:
        return False
    except nats.errors.TimeoutError:
        return True  # subscribed, only slow to answer
    return True


def test_long_data_dirs_get_a_short_private_socket(tmp_path: Path) -> None:
    from providers.swarm import socket_path

    deep = tmp_path / ("x" * 120) / "hosts" / "host-0"
    sock = socket_path(deep)
    assert len(str(sock)) < 108
    assert sock == socket_path(deep)  # stable, so a restarted provisioner finds it again
    assert (sock.parent.stat().st_mode & 0o777) == 0o700
    with contextlib.suppress(OSError):  # shared by this user's swarm hosts: only if unused
        sock.parent.rmdir()


def _hosts_running_under(root: Path) -> set[int]:
    """Every swarm host process of ``root``, found by its environment (pid files aside)."""
    wanted = f"FLEET_SWARM_HOST={root}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and any(
                v.startswith(wanted) for v in (entry / "environ").read_bytes().split(b"\0")
            ):
                found.add(int(entry.name))
    return found


REPLICA = """
import asyncio, sys
from pathlib import Path
from contracts.ids import new_machine_id
from providers.swarm import SwarmProvider
provider = SwarmProvider(data_dir=Path(sys.argv[1]), nats_url=sys.argv[2],
                         environ={"PATH": sys.argv[3], "FLEET_SWARM_HOST_SIZE": "1"})
async def main():
    await asyncio.gather(*(provider.start(new_machine_id(), "t") for _ in range(int(sys.argv[4]))))
asyncio.run(main())
"""


async def test_two_provisioners_of_one_data_dir_never_start_a_host_nobody_can_stop(
    settings: Settings, bus: Bus
) -> None:
    """Replicas of a host's provisioner (processes of their own) share its swarm hosts: when
    both started one at the same moment, both could take host-<n>, and the host whose pid file
    the other overwrote ran on, stopped by no one."""
    assert HOST_SIZE_VAR == "FLEET_SWARM_HOST_SIZE"
    each = 5
    argv = [sys.executable, "-c", REPLICA, str(settings.data_path), settings.nats_url,
            os.environ["PATH"], str(each)]  # fmt: skip
    root = swarm_root(settings.data_path) / "hosts"
    try:
        replicas = [await asyncio.create_subprocess_exec(*argv) for _ in range(2)]
        assert [await r.wait() for r in replicas] == [0, 0]
        assert _hosts_running_under(root) == set(host_pids(settings).values())
        assert len(host_pids(settings)) == 2 * each  # one machine a host
        assert stop_all_swarm(settings.data_path, grace_s=10) == 2 * each
    finally:
        for pid in _hosts_running_under(root):  # what a failure left: none of them is named
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
