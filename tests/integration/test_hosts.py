"""Machines over several hosts (docs/hosts.md): three provisioners, each its own host id, data
dir and capacity, pulling ``machine.created`` from the one shared durable consumer only while
they have room. Real NATS, valkey and swarm daemons; every service in this process."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack

import msgspec
import pytest

from contracts.bus import subjects
from contracts.bus.consumers import Durable, durable_name
from contracts.errors import DaemonUnavailable, HostUnavailable
from contracts.status import MachineStatus
from controlplane.bus import Bus
from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.local import stop_all_local
from providers.swarm import request, running_host_pid, socket_path, stop_all_swarm, swarm_root
from tests.conftest import ADMIN_TOKEN
from tests.integration.test_supervision import daemon_pid
from tests.waiters import wait_until

HOSTS = ("host-1", "host-2", "host-3")
CAPACITY = 4
PLACEMENT_TIMEOUT_S = 3.0


def host_settings(settings: Settings, host_id: str) -> Settings:
    return msgspec.structs.replace(
        settings,
        host_id=host_id,
        host_capacity=CAPACITY,
        host_heartbeat_s=0.5,
        host_lost_after_s=2.0,
        placement_timeout_s=PLACEMENT_TIMEOUT_S,
        data_dir=str(settings.data_path / host_id),
    )


@pytest.fixture
def hosts_settings(settings: Settings) -> list[Settings]:
    return [host_settings(settings, h) for h in HOSTS]


@pytest.fixture
def no_swarm_left(hosts_settings: list[Settings]) -> Iterator[None]:
    """Set up before the stack, so this teardown (every host's swarm and local machines
    ended: machines outlive their provisioner by design) runs after it."""
    yield
    for s in hosts_settings:
        stop_all_local(s.data_path)
        stop_all_swarm(s.data_path, grace_s=10)


@pytest.fixture
async def stack(hosts_settings: list[Settings], no_swarm_left: None) -> AsyncIterator[FleetClient]:
    """A provisioner per host; the other services once (with host-1's settings)."""
    from services.gateway.__main__ import build as gateway
    from services.prober.__main__ import build as prober
    from services.provisioner.__main__ import build as provisioner
    from services.setup_pusher.__main__ import build as setup_pusher

    first = hosts_settings[0]
    async with AsyncExitStack() as es:
        for s in hosts_settings:
            await provisioner(s, es)
        for build in (setup_pusher, prober, gateway):
            await build(first, es)
        client = FleetClient(f"http://127.0.0.1:{first.port}", ADMIN_TOKEN, timeout_s=30)
        es.push_async_callback(client.close)
        yield client


async def create(stack: FleetClient, n: int, *, wait: bool = True) -> list[str]:
    instances = await asyncio.gather(*(stack.create_instance(f"i{i}") for i in range(n)))
    machines = await asyncio.gather(*(stack.create_machine(i.id, "swarm") for i in instances))
    if wait:
        done = await asyncio.gather(
            *(stack.wait_for(m.id, {"ready", "failed"}, timeout_s=60) for m in machines)
        )
        assert [m.status_reason for m in done if m.status is not MachineStatus.READY] == []
    return [m.id for m in machines]


async def placed(stack: FleetClient, ids: list[str]) -> Counter[str | None]:
    return Counter([(await stack.get_machine(mid)).host_id for mid in ids])


async def test_creates_fill_each_host_to_its_capacity_and_no_further(stack: FleetClient) -> None:
    ids = await create(stack, len(HOSTS) * CAPACITY)
    assert await placed(stack, ids) == {h: CAPACITY for h in HOSTS}
    listed = {h.host_id: (h.capacity, h.running, h.stopped, h.state.value)
              for h in await stack.list_hosts()}  # fmt: skip
    assert listed == {h: (CAPACITY, CAPACITY, 0, "active") for h in HOSTS}

    start = time.monotonic()
    [extra] = await create(stack, 1, wait=False)
    failed = await stack.wait_for(extra, {"ready", "failed"}, timeout_s=PLACEMENT_TIMEOUT_S + 15)
    took_s = time.monotonic() - start
    assert failed.status is MachineStatus.FAILED
    assert "no host with capacity" in failed.status_reason
    assert failed.host_id is None
    # It waited for room first (a lower bound only: load can make it later, never earlier).
    assert took_s >= PLACEMENT_TIMEOUT_S, took_s

    # Room again on host-2: its provisioner pulls the next create.
    on_host_2 = [mid for mid in ids if (await stack.get_machine(mid)).host_id == "host-2"]
    await stack.archive_machine(on_host_2[0])
    [again] = await create(stack, 1)
    assert (await stack.get_machine(again)).host_id == "host-2"


async def test_a_drained_host_gets_no_new_machines(stack: FleetClient) -> None:
    drained = await stack.drain_host("host-1")
    assert drained.state.value == "draining"

    # Its provisioner reads the flag with its next heartbeat (every 0.5 s here): wait for one.
    async def heartbeat_after_drain() -> bool:
        host = next(h for h in await stack.list_hosts() if h.host_id == "host-1")
        return host.last_heartbeat > drained.last_heartbeat

    await wait_until(heartbeat_after_drain, timeout=10, every=0.1)
    ids = await create(stack, 2 * CAPACITY)
    assert await placed(stack, ids) == {"host-2": CAPACITY, "host-3": CAPACITY}
    [extra] = await create(stack, 1, wait=False)
    failed = await stack.wait_for(extra, {"ready", "failed"}, timeout_s=PLACEMENT_TIMEOUT_S + 15)
    assert "no host with capacity" in failed.status_reason
    assert "host-1 draining 0/4" in failed.status_reason

    await stack.drain_host("host-1", draining=False)
    [again] = await create(stack, 1)
    assert (await stack.get_machine(again)).host_id == "host-1"


async def test_drain_with_rebuild_moves_a_hosts_machines_to_the_others(
    stack: FleetClient, hosts_settings: list[Settings]
) -> None:
    for other in ("host-2", "host-3"):
        await stack.drain_host(other)
    ids = await create(stack, 2)  # both on host-1: the others are drained
    assert await placed(stack, ids) == {"host-1": 2}
    for other in ("host-2", "host-3"):
        await stack.drain_host(other, draining=False)

    drained = await stack.drain_host("host-1", rebuild=True)
    assert (drained.state.value, drained.not_rebuilt) == ("draining", [])
    assert sorted(r.machine_id for r in drained.rebuilt) == sorted(ids)
    new = [r.replaced_by for r in drained.rebuilt]
    done = await asyncio.gather(*(stack.wait_for(m, {"ready", "failed"}, 60) for m in new))
    assert [(m.status, m.host_id in ("host-2", "host-3")) for m in done] == [
        (MachineStatus.READY, True)
    ] * 2
    for mid in ids:
        await stack.wait_for(mid, [MachineStatus.ARCHIVED], 30)
    await wait_until(lambda: _none_running(hosts_settings[0]), timeout=30, every=0.2)


async def _none_running(settings: Settings) -> bool:
    return await swarm_machines(settings) == set()


async def swarm_machines(settings: Settings) -> set[str]:
    """The machines the swarm processes of one host's data dir run now."""
    hosts = swarm_root(settings.data_path) / "hosts"
    found: set[str] = set()
    for d in hosts.iterdir() if hosts.is_dir() else []:
        if running_host_pid(d) is not None:
            found |= set((await request(socket_path(d), d.name, {"op": "list"}))["machines"])
    return found


async def test_archive_stop_and_start_act_on_the_machines_own_host(
    stack: FleetClient, hosts_settings: list[Settings]
) -> None:
    ids = await create(stack, len(HOSTS) * CAPACITY)
    by_host = {h: [m for m in ids if (await stack.get_machine(m)).host_id == h] for h in HOSTS}
    running = {s.host_id: await swarm_machines(s) for s in hosts_settings}
    assert running == {h: set(by_host[h]) for h in HOSTS}

    # One archive per host: each host's provisioner ends its own (another host's would not
    # find the machine, and the machine would run on).
    archived = {h: by_host[h][0] for h in HOSTS}
    await asyncio.gather(*(stack.archive_machine(m) for m in archived.values()))

    async def ended() -> bool:
        now = {s.host_id: await swarm_machines(s) for s in hosts_settings}
        return now == {h: set(by_host[h]) - {archived[h]} for h in HOSTS}

    await wait_until(ended, timeout=30, every=0.2)

    # A stop and a start on host-3: carried out there, the machine stays host-3's.
    mid = by_host["host-3"][1]
    await stack.stop_machine(mid)
    await stack.wait_for(mid, {"stopped"}, timeout_s=30)
    await wait_until(lambda: _not_running(hosts_settings[2], mid), timeout=30, every=0.2)
    await stack.start_machine(mid)
    ready = await stack.wait_for(mid, {"ready", "failed"}, timeout_s=60)
    assert (ready.status, ready.host_id) == (MachineStatus.READY, "host-3")
    assert mid in await swarm_machines(hosts_settings[2])


async def test_restart_and_refresh_code_are_carried_out_by_the_machines_host(
    stack: FleetClient, hosts_settings: list[Settings]
) -> None:
    """The gateway runs with host-1's data dir; a local machine of host-2 or host-3 lives under
    that host's: only its host's provisioner can restart its daemon or install its code."""
    instances = await asyncio.gather(*(stack.create_instance(f"r{i}") for i in range(CAPACITY + 1)))
    made = await asyncio.gather(*(stack.create_machine(i.id, "local") for i in instances))
    done = await asyncio.gather(*(stack.wait_for(m.id, {"ready", "failed"}, 60) for m in made))
    assert [m.status_reason for m in done if m.status is not MachineStatus.READY] == []
    machine = next(m for m in done if m.host_id != "host-1")  # at most 4 fit on host-1
    own = next(s for s in hosts_settings if s.host_id == machine.host_id)
    old = daemon_pid(own, machine.id)
    assert old is not None
    assert (await stack.restart_machine(machine.id)).id == machine.id
    await wait_until(lambda: daemon_pid(own, machine.id) not in (None, old), timeout=10)

    async def answers() -> bool:  # the new daemon is connected
        try:
            return (await stack.exec(machine.id, ["true"])).exit_code == 0
        except DaemonUnavailable:
            return False

    await wait_until(answers, timeout=10, every=0.2)
    refreshed = await stack.refresh_code(machine.id)
    assert refreshed.machine_id == machine.id
    assert (own.data_path / "machines" / machine.id / "code" / "current").is_file()


async def _not_running(settings: Settings, machine_id: str) -> bool:
    return machine_id not in await swarm_machines(settings)


async def test_a_host_gone_is_lost_and_back_it_ends_what_was_archived_meanwhile(
    hosts_settings: list[Settings], no_swarm_left: None, bus: Bus
) -> None:
    """host-3's provisioner stops (its swarm daemons run on, as a process that died would
    leave them): hosts.list shows it lost, the placement watchdog names it. An archive of one
    of its machines meanwhile ends its daemon; host-3, back, handles the archive it missed and
    resumes its other machines, not that one."""
    from services.provisioner.__main__ import build as provisioner

    third = hosts_settings[2]
    async with AsyncExitStack() as es:
        stack, host3 = await _host3_apart(es, hosts_settings)
        ids = await create(stack, len(HOSTS) * CAPACITY)
        on3 = [m for m in ids if (await stack.get_machine(m)).host_id == "host-3"]
        await host3.aclose()

        async def lost() -> bool:
            return {h.host_id: h.state.value for h in await stack.list_hosts()}["host-3"] == "lost"

        await wait_until(lost, timeout=10, every=0.2)
        gone, *kept = on3
        with pytest.raises(HostUnavailable) as unanswered:  # only its host can restart it
            await stack.restart_machine(kept[0])
        assert unanswered.value.data == {"hostId": "host-3"}
        await stack.archive_machine(gone)
        [extra] = await create(stack, 1, wait=False)
        failed = await stack.wait_for(extra, {"failed"}, timeout_s=PLACEMENT_TIMEOUT_S + 15)
        assert "host-3 lost 3/4" in failed.status_reason  # the archived one counts no more
        # Its daemon ends though its host's provisioner is down (the archive asked it to stop;
        # the other hosts revoke its credentials at once: tests/fast/test_hosts.py).
        await wait_until(lambda: _not_running(third, gone), timeout=30, every=0.2)
        assert await swarm_machines(third) == set(kept)
        # Archiving until its own host, the one that has its files, removes them.
        assert (await stack.get_machine(gone)).status is MachineStatus.ARCHIVING

        await provisioner(third, await es.enter_async_context(AsyncExitStack()))
        archive3 = durable_name(Durable.PROVISIONER_ARCHIVE, "host-3")

        async def caught_up() -> bool:
            info = await bus.js.consumer_info(subjects.STREAM_NAME, archive3)
            return (info.num_pending, info.num_ack_pending) == (0, 0)

        await wait_until(caught_up, timeout=30, every=0.2)  # the archive it missed: done
        assert await swarm_machines(third) == set(kept)  # resumed, not resurrected
        assert (await stack.get_machine(gone)).status is MachineStatus.ARCHIVED
        states = {h.host_id: h.state.value for h in await stack.list_hosts()}
        assert states == dict.fromkeys(HOSTS, "active")


REBUILD_S = 3.0


@pytest.mark.timeout(300)  # waits are bounds, not speeds: a loaded host rebuilds slowly
async def test_a_lost_hosts_machines_are_rebuilt_elsewhere_and_its_return_leaves_them(
    hosts_settings: list[Settings], no_swarm_left: None, bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """host-3 and its machines are SIGKILLed; with FLEET_HOST_LOST_REBUILD_S set, its machines
    are rebuilt on the live hosts once the host is lost, and host-3, back, runs none of the
    machines that were rebuilt elsewhere."""
    from services.provisioner.__main__ import build as provisioner

    monkeypatch.setenv("FLEET_HEARTBEAT_S", "0.5")  # the daemons' beats, as the prober expects
    quick = {"heartbeat_s": 0.5, "host_lost_rebuild_s": REBUILD_S}
    hosts = [msgspec.structs.replace(s, **quick) for s in hosts_settings]
    third = hosts[2]
    async with AsyncExitStack() as es:
        stack, host3 = await _host3_apart(es, hosts)
        for host in ("host-1", "host-2"):  # so that both land on host-3
            await stack.drain_host(host)
        ids = await create(stack, 2)
        assert await placed(stack, ids) == Counter({"host-3": 2})
        for host in ("host-1", "host-2"):
            await stack.drain_host(host, draining=False)
        instances = [(await stack.get_machine(m)).instance_id for m in ids]

        await host3.aclose()
        _kill_swarm(third)

        async def lost() -> bool:
            return {h.host_id: h.state.value for h in await stack.list_hosts()}["host-3"] == "lost"

        await wait_until(lost, timeout=15, every=0.2)
        async with asyncio.timeout(REBUILD_S + 150):
            new = [await _replaced(stack, i, old) for i, old in zip(instances, ids, strict=True)]
        assert (await placed(stack, new)).keys() <= {"host-1", "host-2"}
        for old in ids:  # archiving until host-3, which has its files, removes them
            got = await stack.get_machine(old)
            assert (got.status, got.status_reason) == (
                MachineStatus.ARCHIVING, "its host host-3 is lost: rebuilt on a live host"
            )  # fmt: skip

        await provisioner(third, await es.enter_async_context(AsyncExitStack()))
        archive3 = durable_name(Durable.PROVISIONER_ARCHIVE, "host-3")

        async def caught_up() -> bool:
            info = await bus.js.consumer_info(subjects.STREAM_NAME, archive3)
            return (info.num_pending, info.num_ack_pending) == (0, 0)

        await wait_until(caught_up, timeout=30, every=0.2)
        assert await swarm_machines(third) == set()  # back, it restarts none of them
        for old in ids:
            await stack.wait_for(old, [MachineStatus.ARCHIVED], 30)
        assert [(await stack.get_machine(m)).status for m in new] == [MachineStatus.READY] * 2


async def _host3_apart(
    es: AsyncExitStack, hosts: list[Settings]
) -> tuple[FleetClient, AsyncExitStack]:
    """The stack with host-3's provisioner in a stack of its own (to stop it alone); the
    other services run once, with host-1's settings. A client to its gateway."""
    from services.gateway.__main__ import build as gateway
    from services.prober.__main__ import build as prober
    from services.provisioner.__main__ import build as provisioner
    from services.setup_pusher.__main__ import build as setup_pusher

    for s in hosts[:2]:
        await provisioner(s, es)
    host3 = await es.enter_async_context(AsyncExitStack())
    await provisioner(hosts[2], host3)
    for build in (setup_pusher, prober, gateway):
        await build(hosts[0], es)
    stack = FleetClient(f"http://127.0.0.1:{hosts[0].port}", ADMIN_TOKEN, timeout_s=30)
    es.push_async_callback(stack.close)
    return stack, host3


def _kill_swarm(settings: Settings) -> None:
    """SIGKILL one host's swarm processes (its machines die with them, unannounced)."""
    hosts = swarm_root(settings.data_path) / "hosts"
    for d in hosts.iterdir():
        pid = running_host_pid(d)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)


async def _replaced(stack: FleetClient, instance_id: str, old: str) -> str:
    """The instance's machine that replaced ``old``, once it is ready."""
    found: list[str] = []

    async def made() -> bool:
        found[:] = [m.id for m in await stack.list_machines(instance_id) if m.id != old]
        return bool(found)

    await wait_until(made, timeout=REBUILD_S + 60, every=0.2)
    done = await stack.wait_for(found[0], {"ready", "failed"}, timeout_s=60)
    assert done.status is MachineStatus.READY, done.status_reason
    return done.id
