"""Machines' metrics on real daemons through the whole stack (namespaces machines: the local
provider's bubblewrap sandbox in its cgroup): a busy loop holding 200 MB shows as about one
core and 200 MB; the home's disk and the network count too. On docker and gvisor machines:
test_docker_watch_metrics.py, test_gvisor_watch_metrics.py; the rules in memory:
tests/fast/test_machine_metrics.py."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

import msgspec
import pytest

from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ReadyMachine
from tests.integration.test_files_cli import _fleet
from tests.metrics_checks import shows_its_load
from tests.waiters import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def shared_settings(shared_settings: Settings) -> Settings:
    """A home measured every 10 s (FLEET_METRICS_DISK_S), not each minute: what a test waits
    for comes within its time on a loaded host."""
    return msgspec.structs.replace(shared_settings, metrics_disk_s=10.0)


async def test_a_machine_under_load_shows_a_core_and_its_memory(
    shared_stack: FleetClient, ready_machine: ReadyMachine, shared_settings: Settings
) -> None:
    """And ``fleet machines top`` shows it first, and ``fleet machines watch`` its changes."""
    idle = await ready_machine("metrics-idle")
    mid = await ready_machine("metrics-load")
    took = await shows_its_load(shared_stack, mid)
    print(f"namespaces: load seen in machines.metrics {took:.1f} s after it started")
    await wait_until(lambda: _sampled(shared_stack, idle), timeout=30)
    cli = await _fleet(shared_settings, "machines", "top")
    out, err = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode == 0, err
    lines = out.decode().splitlines()
    assert lines[0].split()[:4] == ["ID", "INSTANCE", "STATUS", "CPU"], lines
    ids = [line.split()[0] for line in lines[1:]]
    assert ids.index(mid) < ids.index(idle), lines  # the busiest first
    cli = await _fleet(shared_settings, "machines", "watch", mid, ".", "--events", "create")
    assert cli.stdout is not None
    line = b""
    async with asyncio.timeout(60):  # the watch is in place once it reports a file made
        for n in itertools.count():
            await shared_stack.exec(mid, ["touch", f"made-{n}"])
            with contextlib.suppress(TimeoutError):
                line = await asyncio.wait_for(cli.stdout.readline(), 1.0)
                break
    assert line.decode().startswith("create\t"), line
    assert b"/made-" in line, line
    cli.terminate()
    await cli.wait()


async def _sampled(client: FleetClient, mid: str) -> bool:
    return (await client.get_machine(mid)).metrics is not None


@pytest.mark.timeout(240)
async def test_a_machines_home_and_network_are_counted(
    shared_stack: FleetClient, ready_machine: ReadyMachine
) -> None:
    mid = await ready_machine("metrics-disk")
    script = "head -c 30000000 /dev/urandom > big && sync"
    assert (await shared_stack.exec(mid, ["sh", "-c", script])).exit_code == 0

    running = time.time()  # a sample of its start may know no counters of its network yet

    async def counted() -> bool:
        got = await shared_stack.machine_metrics(mid, since=time.time() - 120)
        return any((s.disk_bytes or 0) >= 30_000_000 and s.disk_limit_bytes
                   and s.at - s.step_s >= running for s in got.samples)  # fmt: skip

    await wait_until(counted, timeout=90, every=1.0)  # a home is measured every 10 s here
    got = await shared_stack.machine_metrics(mid, since=time.time() - 120)
    since_running = [s for s in got.samples if s.at - s.step_s >= running]
    assert since_running, got.samples
    assert all(s.net_in_bytes is not None and s.net_out_bytes is not None
               for s in since_running), got.samples  # fmt: skip
    assert sum(s.net_out_bytes or 0 for s in got.samples) > 0  # its daemon talks to NATS
