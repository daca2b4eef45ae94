"""Forks with memory of a gvisor machine (docs/fork-snapshots.md), on real runsc sandboxes with
real daemons: a process holding a count in memory goes on in the source and in each of 3 forks,
each on its own, each fork speaks as itself, and each serves its own copy of the source's web
server on its own preview (the same for machines made from a memory snapshot). The source's
credential a fork holds, refused: tests/integration/nats_auth/test_gvisor_fork_credentials.py.
The rules in memory: tests/fast/test_runtime.py.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import aiohttp
import msgspec
import pytest

from contracts.daemon.rpc import ProcessInfo
from controlplane.host_addresses import nats_servers
from controlplane.policy import Placement
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from providers.gvisor import Runsc, park_daemon, running_container, sandbox_pid
from providers.local import LocalProvider
from services.provisioner.builds.environment import machine_placement
from tests.conftest import ADMIN_TOKEN
from tests.gvisor_stack import local_provider
from tests.integration import test_gvisor as gv
from tests.integration.test_gvisor import answers, ready_gvisor
from tests.integration.test_ports import bearer, previews
from tests.waiters import wait_until

#: NATS at an address of the host other than its loopback (test_gvisor.py says why).
nats_server = gv.nats_server


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, runtime="gvisor")


#: Counts in memory and writes "<pid> <count>" to its file each tick; a number written to the
#: file ``add`` is added to the count (then the file removed).
COUNTER = r"""
import os, sys, time
held = bytearray(os.urandom(1 << 20)) * 8
n = 0
while True:
    n += 1
    try:
        n += int(open('add').read())
        os.remove('add')
    except (OSError, ValueError):
        pass
    with open(sys.argv[1] + '.tmp', 'w') as f:
        f.write(f'{os.getpid()} {n} {len(held)}')
    os.replace(sys.argv[1] + '.tmp', sys.argv[1])
    time.sleep(0.2)
"""


def count_in(home: Path) -> tuple[int, int]:
    """The counter's pid and count, as last written in ``home``."""
    try:
        pid, n, _ = (home / "count").read_text().split()
    except (OSError, ValueError):
        return 0, 0
    return int(pid), int(n)


def counted_past(home: Path, n: int) -> Callable[[], bool]:
    return lambda: count_in(home)[1] > n


async def counting(stack: FleetClient, machines: Path, name: str) -> tuple[str, ProcessInfo]:
    """A ready gvisor machine whose counter has counted a few times, and that serves its home
    on ``WEB`` (python3 -m http.server, which a memory image keeps); its id and counter."""
    mid = await ready_gvisor(stack, name)
    await stack.write_file(mid, "counter.py", COUNTER)
    proc = await stack.start_process(mid, [sys.executable, "-I", "counter.py", "count"],
                                     tag="counter")  # fmt: skip
    await stack.start_process(mid, ["python3", "-m", "http.server", str(WEB), "--bind",
                                    "127.0.0.1"], tag="web")  # fmt: skip
    await wait_until(lambda: count_in(machines / mid / "home")[1] >= 3, timeout=180)
    await wait_until(partial(serves, stack, mid), timeout=180, every=0.5)
    return mid, proc


#: The port each machine serves its home on.
WEB = 8000


async def serves(stack: FleetClient, mid: str) -> bool:
    """The machine's web server answers inside it."""
    probe = ["python3", "-c", f"import urllib.request as u; u.urlopen('http://127.0.0.1:{WEB}/')"]
    return (await stack.exec(mid, probe, timeout_s=60)).exit_code == 0


async def own_pages(stack: FleetClient, settings: Settings, mids: list[str]) -> None:
    """Each machine's preview of ``WEB`` is its own copy of the server: it lists a file
    written in that machine's home alone."""
    for m in mids:
        await stack.write_file(m, f"only-{m}", "")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        for m in mids:
            page = f"{previews(settings)}/machines/{m}/ports/{WEB}/"
            async with session.get(page, headers=bearer(ADMIN_TOKEN)) as r:
                listing = await r.text()
            assert r.status == 200, listing
            assert [o for o in mids if f"only-{o}" in listing] == [m], listing


@pytest.mark.timeout(1200)
async def test_three_forks_with_memory_go_on_each_on_its_own_as_machines_of_their_own(
    stack: FleetClient, stack_settings: Settings, store: Store
) -> None:
    machines = stack_settings.data_path.resolve() / "machines"
    mid, proc = await counting(stack, machines, "gv-fork-memory")
    source_home = machines / mid / "home"
    pid_inside, before = count_in(source_home)
    box = SecretBox(stack_settings.secret_key)
    sealed = await store.machine_secret(mid)
    assert sealed is not None
    copied = box.decrypt(sealed)  # what the source's processes hold, and every fork's copy

    began = time.monotonic()
    forks = [m.id for m in await stack.fork_machine(mid, 3, memory=True)]
    assert len(set(forks)) == 3
    assert mid not in forks
    assert await answers(stack, mid)  # the source's daemon is back once the call returned
    waits = [asyncio.ensure_future(stack.wait_for(f, ["ready", "failed"], timeout_s=600))
             for f in forks]  # fmt: skip
    first = None
    for done in asyncio.as_completed(waits):
        got = await done
        assert got.status == "ready", got.status_reason
        first = first or (time.monotonic() - began)
    print(f"fork with memory: first of 3 ready {first:.2f}s, all {time.monotonic() - began:.2f}s")

    # Each fork's copy of the counter goes on from the source's count, with its PID, in the
    # fork's own home; the source's goes on too.
    homes = [machines / f / "home" for f in forks]
    for home in homes:
        await wait_until(counted_past(home, before + 3), timeout=180)
        assert count_in(home)[0] == pid_inside
        assert count_in(home)[1] < before + 5000  # from the source's count, never from 0
    await wait_until(lambda: count_in(source_home)[1] > before + 3, timeout=180)
    # Each on its own: a number added to one fork's count is in no other's.
    await stack.write_file(forks[0], "add", "100000")
    await wait_until(lambda: count_in(homes[0])[1] > 100000, timeout=180)
    assert all(count_in(h)[1] < 100000 for h in [*homes[1:], source_home])
    # Each fork's daemon speaks as the fork, and lists the process it inherited.
    for f in forks:
        await wait_until(partial(answers, stack, f), timeout=180, every=0.5)
        listed = [(p.pid, p.state) for p in await stack.list_processes(f) if p.tag == "counter"]
        assert listed == [(proc.pid, "running")]
    await wait_until(lambda: answers(stack, mid), timeout=180, every=0.5)

    # Each serves its own copy of the source's web server, on its own preview.
    await own_pages(stack, stack_settings, [mid, *forks])

    # The source's credential was renewed (the copy in every fork's memory is refused by the
    # auth callout: tests/integration/nats_auth/test_gvisor_fork_credentials.py).
    renewed = await store.machine_secret(mid)
    assert renewed is not None
    assert box.decrypt(renewed) != copied


@pytest.mark.timeout(1200)
async def test_a_machine_made_from_a_memory_snapshot_starts_with_its_processes_running(
    stack: FleetClient, stack_settings: Settings
) -> None:
    machines = stack_settings.data_path.resolve() / "machines"
    mid, proc = await counting(stack, machines, "gv-snapshot-memory")
    source_home = machines / mid / "home"
    pid_inside, before = count_in(source_home)
    snapshot = await stack.snapshot_machine(mid, "warm", memory=True)
    assert snapshot.memory
    assert snapshot.pause_ms > 0
    # The source runs on; its daemon, started again with its renewed credential, answers as
    # soon as the call has returned.
    await stack.write_file(mid, "add", "100000")  # the source's count after the snapshot
    await wait_until(lambda: count_in(source_home)[1] > 100000, timeout=180)

    made: list[str] = []
    for _ in range(2):  # each a machine of its own, with the snapshot's processes
        new = await stack.create_from_snapshot(snapshot.instance_id, snapshot.id)
        got = await stack.wait_for(new.id, ["ready", "failed"], timeout_s=600)
        assert got.status == "ready", got.status_reason
        made.append(new.id)
    for m in made:
        home = machines / m / "home"
        await wait_until(counted_past(home, before + 3), timeout=180)
        assert count_in(home)[0] == pid_inside
        assert count_in(home)[1] < 100000  # from the snapshot's count, not the source's now
        await wait_until(partial(answers, stack, m), timeout=180, every=0.5)
        listed = [(p.pid, p.state) for p in await stack.list_processes(m) if p.tag == "counter"]
        assert listed == [(proc.pid, "running")]
    await own_pages(stack, stack_settings, [mid, *made])
    # Deleting the snapshot deletes its memory image; the machines made from it run on.
    memory = stack_settings.data_path.resolve() / "snapshots" / f"{snapshot.id}.memory"
    assert memory.is_dir()
    await stack.delete_snapshot(snapshot.id)
    assert not memory.exists()
    assert all([await answers(stack, m) for m in made])


@pytest.mark.timeout(900)
@pytest.mark.parametrize("frozen", [True, False], ids=["frozen", "parked"])
async def test_a_machine_a_take_left_frozen_goes_on_where_it_was_at_its_next_start(
    stack: FleetClient, stack_settings: Settings, store: Store, frozen: bool
) -> None:
    """A provisioner killed between a memory image's freeze (``runsc pause``, its daemon parked)
    and its thaw leaves the machine frozen, or, killed before the freeze, its daemon parked:
    the next provisioner's start of its machines thaws it and has its daemon reconnect, its
    processes going on where they were. Before, a frozen one was taken for dead and started
    afresh, every process of it lost, and a parked one's daemon never came back (found by the
    soak, seed 3: a kernel's count gone, and a machine unresponsive, after a provisioner's
    restart during a memory snapshot)."""
    machines = stack_settings.data_path.resolve() / "machines"
    mid, proc = await counting(stack, machines, "gv-left-frozen")
    home, machine_dir = machines / mid / "home", machines / mid
    runsc = Runsc(stack_settings.runsc, stack_settings.gvisor_platform, stack_settings.data_path)
    pid, cid = sandbox_pid(machine_dir), running_container(machine_dir, mid)
    assert pid is not None
    nats_ports = {port for _, port in nats_servers(stack_settings.nats_url)}
    await park_daemon(runsc, machine_dir, mid, pid, cid, nats_ports)  # as a take parks it
    if frozen:
        assert runsc.run("pause", cid, inside=pid).returncode == 0  # frozen, its taker gone
    pid_inside, frozen_at = count_in(home)
    provider, token = await own_provider(stack_settings, store, runsc, mid)
    assert await provider.start(mid, token) == f"local:{pid}"  # the same sandbox, going on
    await wait_until(counted_past(machine_dir / "home", frozen_at), timeout=180)
    assert count_in(home)[0] == pid_inside
    await wait_until(partial(answers, stack, mid), timeout=180, every=0.5)
    listed = [(p.pid, p.state) for p in await stack.list_processes(mid) if p.tag == "counter"]
    assert listed == [(proc.pid, "running")]


async def own_provider(settings: Settings, store: Store, runsc: Runsc,
                       mid: str) -> tuple[LocalProvider, str]:  # fmt: skip
    """A provider of the stack's host, as a provisioner's next start makes it, and the
    machine's token: what it starts the machine with."""

    async def placement(machine_id: str) -> Placement:
        return await machine_placement(store, settings, await store.get_machine(machine_id))

    provider = local_provider(settings, settings.nats_url, runsc, placement)
    sealed = await store.machine_secret(mid)
    assert sealed is not None
    return provider, SecretBox(settings.secret_key).decrypt(sealed)


async def _stopped_for_own_provider(
    stack: FleetClient, settings: Settings, store: Store, name: str
) -> tuple[LocalProvider, Runsc, str, str, Path, int]:
    """A gvisor machine made ready, then stopped, and a provider of the test's own for it
    (the stack's sees it stopped, and starts nothing): the provider, its runsc, the
    machine's id, its token, its directory and how much its daemon log holds already."""
    mid = await ready_gvisor(stack, name)
    await stack.stop_machine(mid)
    stopped = await stack.wait_for(mid, ["stopped"], timeout_s=120)
    assert stopped.status == "stopped", stopped.status_reason
    runsc = Runsc(settings.runsc, settings.gvisor_platform, settings.data_path)
    provider, token = await own_provider(settings, store, runsc, mid)
    machine_dir = settings.data_path.resolve() / "machines" / mid
    return provider, runsc, mid, token, machine_dir, (machine_dir / "daemon.log").stat().st_size


def _supervisor_said(machine_dir: Path, since: int, pid: int, what: str) -> int:
    """How many times the machine's supervisor said ``what`` in its log after ``since``; its
    sandbox (``pid``) must still be the one running."""
    with (machine_dir / "daemon.log").open("rb") as f:
        f.seek(since)
        said = f.read().decode(errors="replace")
    assert sandbox_pid(machine_dir) == pid, f"its sandbox ended; it said: {said!r}"
    return said.count(f"supervisor: {what}")


@pytest.mark.timeout(600)
async def test_a_start_that_finds_the_machine_just_started_leaves_it_be(
    stack: FleetClient, stack_settings: Settings, store: Store
) -> None:
    """A start that finds the machine's sandbox running (a start and a wake at once, a create
    delivered again, a provisioner's restart) while it has only just been started leaves it
    be: the resume's SIGUSR2, which a daemon a take left parked needs, ended a supervisor
    without its signal handlers yet, and the machine with it, before it printed a word
    (found by the soak: a stopped machine woken by an exec while a start was asked for it
    never came up). A parked daemon is still woken: the test above."""
    provider, runsc, mid, token, machine_dir, before = await _stopped_for_own_provider(
        stack, stack_settings, store, "gv-start-twice"
    )
    # The provisioner's start, then a second one the moment the first has started it.
    first = await provider.start(mid, token)
    assert await provider.start(mid, token) == first
    pid = sandbox_pid(machine_dir)
    assert pid is not None, "the second start ended the first's sandbox"
    said = partial(_supervisor_said, machine_dir, before, pid, "daemon_started")
    await wait_until(lambda: said() >= 1, timeout=120, every=0.1)
    assert runsc.status(running_container(machine_dir, mid), pid) == "running"
    await provider.stop(mid)


@pytest.mark.timeout(600)
async def test_a_restart_of_a_machine_just_started_restarts_its_daemon(
    stack: FleetClient, stack_settings: Settings, store: Store
) -> None:
    """``machines.restart`` the moment the machine's sandbox started (a provisioner's restart
    starts the sandboxes of live machines) restarts its daemon, and the machine lives on: the
    restart's SIGHUP, sent to a supervisor without its signal handlers yet, ended the
    sandbox (gVisor ends an init on a signal it does not handle)."""
    provider, runsc, mid, token, machine_dir, before = await _stopped_for_own_provider(
        stack, stack_settings, store, "gv-restart-young"
    )
    await provider.start(mid, token)
    pid = sandbox_pid(machine_dir)
    assert pid is not None
    assert await provider.parts.running.restart(mid)
    said = partial(_supervisor_said, machine_dir, before, pid, "daemon_started")
    await wait_until(lambda: said() >= 2, timeout=120, every=0.1)  # its first, and the restart's
    assert runsc.status(running_container(machine_dir, mid), pid) == "running"
    await provider.stop(mid)
