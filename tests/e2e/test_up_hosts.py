"""`fleet up --hosts 3` (docs/hosts.md): three hosts on this machine. With capacity 4 each,
twelve creates land four on each host and the thirteenth fails "no host with capacity" within
the placement timeout. A host whose provisioner and machines are SIGKILLed is marked lost, then
its machines; the other hosts' machines answer all along; an archive ends a machine on its own
host only; a rebuild lands on a live host that is not drained; the host, back, resumes its
machines but not the one archived meanwhile."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from contracts.status import MachineStatus
from fleet.client import FleetClient
from providers.swarm import request, running_host_pid, socket_path, swarm_root
from tests.e2e.conftest import FleetUp, start_fleet_up
from tests.waiters import wait_until

HOSTS = ("host-1", "host-2", "host-3")
CAPACITY = 4
PLACEMENT_TIMEOUT_S = 3.0


@pytest.mark.timeout(240)
async def test_fleet_up_hosts_places_by_capacity(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "FLEET_LOG_LEVEL": "warning", "FLEET_WARM_POOL": "",
           "FLEET_HOST_CAPACITY": str(CAPACITY),
           "FLEET_PLACEMENT_TIMEOUT_S": str(PLACEMENT_TIMEOUT_S)}  # fmt: skip
    up = start_fleet_up(tmp_path / "data", "--hosts", "3", env=env)
    try:
        assert "hosts        host-1 host-2 host-3" in up.banner
        async with FleetClient(up.url, up.token, timeout_s=60) as fleet:
            # The banner comes once every host has announced itself: a drain or a placement
            # right after it finds them all.
            assert sorted(h.host_id for h in await fleet.list_hosts()) == list(HOSTS)
            n = len(HOSTS) * CAPACITY
            insts = await asyncio.gather(*(fleet.create_instance(f"h{i}") for i in range(n + 1)))
            made = await asyncio.gather(*(fleet.create_machine(i.id, "swarm") for i in insts[:n]))
            done = await asyncio.gather(
                *(fleet.wait_for(m.id, {"ready", "failed"}, timeout_s=90) for m in made)
            )
            assert [m.status_reason for m in done if m.status is not MachineStatus.READY] == []
            assert Counter(m.host_id for m in done) == {h: CAPACITY for h in HOSTS}
            # Each host's machines run under its own data dir.
            for m in done:
                assert (
                    up.data_dir / "hosts" / str(m.host_id) / "swarm" / "machines" / m.id
                ).is_dir()

            start = time.monotonic()
            extra = await fleet.create_machine(insts[n].id, "swarm")
            failed = await fleet.wait_for(extra.id, {"ready", "failed"}, timeout_s=30)
            assert failed.status is MachineStatus.FAILED
            assert "no host with capacity" in failed.status_reason
            # It waited for room first (a lower bound: load makes it later, never earlier).
            assert time.monotonic() - start >= PLACEMENT_TIMEOUT_S

        listed = up.cli("hosts", "list")
        assert listed.returncode == 0, listed.stderr
        rows = [line.split()[:5] for line in listed.stdout.splitlines()[1:]]
        assert rows == [[h, "active", str(CAPACITY), str(CAPACITY), "0"] for h in HOSTS]
    finally:
        up.stop()


LOST_AFTER_S = 3.0


def host_pids(up: FleetUp, host_id: str) -> list[int]:
    """The host's provisioner (a child of `fleet up` with its FLEET_HOST_ID) and its swarm
    processes (its machines)."""
    wanted = f"FLEET_HOST_ID={host_id}".encode()
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError):
            continue
        if int(stat[1]) == up.proc.pid and b"services.provisioner" in cmdline and wanted in environ:
            pids.append(int(proc.name))
    hosts = swarm_root(up.data_dir / "hosts" / host_id) / "hosts"
    pids += [p for d in hosts.iterdir() if (p := running_host_pid(d)) is not None]
    return pids


async def swarm_machines(up: FleetUp, host_id: str) -> set[str]:
    """The machines host ``host_id``'s swarm processes run now."""
    found: set[str] = set()
    for d in (swarm_root(up.data_dir / "hosts" / host_id) / "hosts").iterdir():
        if running_host_pid(d) is not None:
            found |= set((await request(socket_path(d), d.name, {"op": "list"}))["machines"])
    return found


async def keep_answering(fleet: FleetClient, machines: list[str], stop: asyncio.Event) -> int:
    """Exec on each of ``machines`` in turn until ``stop``; every answer must be right."""
    answered = 0
    while not stop.is_set():
        for mid in machines:
            got = await fleet.exec(mid, ["echo", mid], timeout_s=10)
            assert (got.exit_code, got.stdout) == (0, f"{mid}\n"), got
            answered += 1
    return answered


@pytest.mark.timeout(240)
async def test_a_killed_host_is_lost_its_machines_rebuilt_elsewhere_and_it_comes_back(
    tmp_path: Path,
) -> None:
    env = {"PATH": os.environ["PATH"], "FLEET_LOG_LEVEL": "warning", "FLEET_WARM_POOL": "",
           "FLEET_HOST_CAPACITY": "2", "FLEET_HOST_HEARTBEAT_S": "0.5",
           "FLEET_HOST_LOST_AFTER_S": str(LOST_AFTER_S), "FLEET_HEARTBEAT_S": "0.5",
           "FLEET_PLACEMENT_TIMEOUT_S": "10"}  # fmt: skip
    up = start_fleet_up(tmp_path / "data", "--hosts", "3", env=env)
    try:
        async with FleetClient(up.url, up.token, timeout_s=60) as fleet:
            insts = await asyncio.gather(*(fleet.create_instance(f"k{i}") for i in range(6)))
            made = await asyncio.gather(*(fleet.create_machine(i.id, "swarm") for i in insts))
            done = await asyncio.gather(*(fleet.wait_for(m.id, {"ready"}, 90) for m in made))
            on = {h: [m.id for m in done if m.host_id == h] for h in HOSTS}
            assert {h: len(ids) for h, ids in on.items()} == dict.fromkeys(HOSTS, 2)
            # An archive on host-1 and one on host-2: each ends on its own host only.
            await asyncio.gather(*(fleet.archive_machine(on[h][1]) for h in ("host-1", "host-2")))

            async def archived_where_they_ran() -> bool:
                now = {h: await swarm_machines(up, h) for h in HOSTS}
                return now == {"host-1": {on["host-1"][0]}, "host-2": {on["host-2"][0]},
                               "host-3": set(on["host-3"])}  # fmt: skip

            await wait_until(archived_where_they_ran, timeout=30, every=0.2)
            # host-2 has room again but is drained: the rebuild below must go to host-1.
            assert (await fleet.drain_host("host-2")).state.value == "draining"
            live = [on["host-1"][0], on["host-2"][0]]
            victims = host_pids(up, "host-3")
            assert len(victims) >= 2, victims  # its provisioner and its swarm process

            stop = asyncio.Event()
            answering = asyncio.create_task(keep_answering(fleet, live, stop))
            # `fleet up` restarts a service that dies: frozen, it leaves host-3 dead until
            # SIGCONT (the other services are processes of their own and run on).
            os.kill(up.proc.pid, signal.SIGSTOP)
            try:
                killed = time.monotonic()
                for pid in victims:
                    os.kill(pid, signal.SIGKILL)

                async def host_3_lost() -> bool:
                    return {h.host_id: h.state.value for h in await fleet.list_hosts()}[
                        "host-3"
                    ] == "lost"

                await wait_until(host_3_lost, timeout=LOST_AFTER_S + 10, every=0.1)
                host_lost_s = time.monotonic() - killed
                lost = [await fleet.wait_for(m, {"lost"}, LOST_AFTER_S + 10) for m in on["host-3"]]
                machines_lost_s = time.monotonic() - killed
                assert all("its host host-3 is lost" in m.status_reason for m in lost), lost
                # Not before its heartbeats stopped for LOST_AFTER_S (its last came up to one
                # interval, 0.5 s, before the kill); the waits above bound how late.
                assert host_lost_s >= LOST_AFTER_S - 0.5, host_lost_s
                assert machines_lost_s >= LOST_AFTER_S - 0.5, machines_lost_s

                gone, other = on["host-3"]
                rebuilt = await fleet.rebuild_machine(lost[0].instance_id)
                ready = await fleet.wait_for(rebuilt.id, {"ready", "failed"}, 60)
                assert (ready.status, ready.host_id) == (MachineStatus.READY, "host-1")
                stop.set()
                assert await answering > len(live)  # and not one wrong answer meanwhile
            finally:
                os.kill(up.proc.pid, signal.SIGCONT)
                if not answering.done():  # a failure above: its answer no longer matters
                    answering.cancel()
                    await asyncio.gather(answering, return_exceptions=True)
            # `fleet up` restarts host-3's provisioner: the host is back; its machine that was
            # lost reports again, the one its rebuild archived stays archived.
            back = await fleet.wait_for(other, {"ready"}, 60)
            assert back.host_id == "host-3"
            await fleet.wait_for(gone, {"archived"}, 30)  # removed by its host, now back
            assert await swarm_machines(up, "host-3") == {other}
    finally:
        up.stop()
