"""A local (sandboxed) machine's limits: its own cgroup, made before bwrap starts and removed
at archive. A memory hog or a fork bomb inside a machine is stopped by them; the machine's
daemon and the other machines keep working."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from contracts.errors import ToolError
from contracts.status import MachineStatus
from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.sandbox import MachineCgroup, cgroup
from tests.docker_env import docker_gateway, docker_image, inspect, nats_server, remove_containers
from tests.waiters import wait_until

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]

MEMORY_MB, PIDS, CPUS = 256, 64, 0.5


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    assert cgroup.unavailable() is None  # the suite runs as root: it must have cgroups
    return msgspec.structs.replace(
        settings, machine_memory_mb=MEMORY_MB, machine_pids=PIDS, machine_cpus=CPUS
    )


async def ready(stack: FleetClient, name: str, provider: str = "local", **own: float) -> str:
    inst = await stack.create_instance(name)
    if own:
        await stack.set_limits(inst.id, **own)  # type: ignore[arg-type]
    machine = await stack.create_machine(inst.id, provider)  # type: ignore[arg-type]
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=60)
    assert done.status is MachineStatus.READY, done.status_reason
    return machine.id


def group_file(mid: str, controller: str, name: str) -> Path:
    group = MachineCgroup(mid)
    d = group.dirs[0] if group.v2 else group.dirs[cgroup.V1_CONTROLLERS.index(controller)]
    return d / name


async def echoes(stack: FleetClient, mid: str) -> bool:
    return (await stack.exec(mid, ["echo", "ok"], timeout_s=10)).stdout == "ok\n"


async def test_each_machine_has_its_cgroup_until_archived(stack: FleetClient) -> None:
    a = await ready(stack, "limited")
    group = MachineCgroup(a)
    if group.v2:
        assert group_file(a, "pids", "pids.max").read_text().strip() == str(PIDS)
    else:
        assert group_file(a, "pids", "pids.max").read_text().strip() == str(PIDS)
        limit = group_file(a, "memory", "memory.limit_in_bytes").read_text().strip()
        assert int(limit) == MEMORY_MB * 1024 * 1024
        quota = group_file(a, "cpu", "cpu.cfs_quota_us").read_text().strip()
        assert int(quota) == int(CPUS * 100_000)
    # Every process of the machine is in it: bwrap, its init, the supervisor, the daemon.
    assert len(group.pids()) >= 4
    await stack.archive_machine(a)
    await wait_until(lambda: not any(d.exists() for d in group.dirs), timeout=10)


async def test_a_memory_hog_is_killed_and_the_machine_lives_on(stack: FleetClient) -> None:
    a, b = await asyncio.gather(ready(stack, "hog"), ready(stack, "bystander"))
    hog = "b = bytearray(3 * 256 * 2**20)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('kept')"
    result = await stack.exec(a, ["python3", "-c", hog], timeout_s=60)
    assert result.exit_code == -9, result  # the OOM killer, inside A's group
    assert "kept" not in result.stdout
    assert await echoes(stack, a)
    assert await echoes(stack, b)


async def test_a_fork_bomb_hits_the_pids_limit_and_others_keep_working(
    stack: FleetClient,
) -> None:
    a, b = await asyncio.gather(ready(stack, "bomb"), ready(stack, "bystander"))
    bomb = asyncio.create_task(
        stack.exec(a, ["sh", "-c", "b() { b | b & }; b; sleep 20"], timeout_s=5)
    )
    events = group_file(a, "pids", "pids.events")  # "max N": forks refused at the limit

    def refused_forks() -> int:
        return int(dict(line.split() for line in events.read_text().splitlines())["max"])

    await wait_until(lambda: refused_forks() > 0, timeout=10)  # the bomb is at it
    assert int(group_file(a, "pids", "pids.current").read_text()) <= PIDS
    assert await echoes(stack, b)  # the other machine does not notice
    result = await bomb  # its shell gives up ("Cannot fork") or times out
    assert result.timed_out or "Cannot fork" in result.stderr, result
    # The exec's end (or timeout) ends every process of the bomb; A's own daemon serves again.
    await wait_until(lambda: echoes(stack, a), timeout=20, every=0.5)


@pytest.mark.usefixtures("remove_containers")
@pytest.mark.parametrize("provider", ["local", "docker"])
async def test_an_instances_own_limits_reach_its_machine(stack: FleetClient, provider: str) -> None:
    mid = await ready(stack, "own", provider, memory_mb=300, cpus=0.25, pids=80)
    if provider == "docker":
        host = (await inspect(mid))["HostConfig"]
        assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (300 << 20, 25e7, 80)
        return
    assert group_file(mid, "pids", "pids.max").read_text().strip() == "80"
    if not MachineCgroup(mid).v2:
        limit = group_file(mid, "memory", "memory.limit_in_bytes").read_text().strip()
        assert int(limit) == 300 << 20
        assert group_file(mid, "cpu", "cpu.cfs_quota_us").read_text().strip() == "25000"


#: Forks children that sleep until every pid of the limit is taken, and takes any pid freed.
HOLD_EVERY_PID = """
import os, time
while True:
    try:
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
    except OSError:
        time.sleep(0.01)
"""


async def test_an_exec_at_the_pids_limit_gets_a_named_error(stack: FleetClient) -> None:
    """A machine whose processes hold every pid of its limit: an exec is refused with an error
    that says so (not an internal error), and the machine serves again once they are gone."""
    mid = await ready(stack, "full")
    await stack.start_process(mid, ["python3", "-c", HOLD_EVERY_PID], tag="hog")
    pids = group_file(mid, "pids", "pids.current")
    await wait_until(lambda: int(pids.read_text()) >= PIDS)
    with pytest.raises(ToolError, match="process limit"):
        await stack.exec(mid, ["true"], timeout_s=10)
    await stack.kill_process(mid, tag="hog")
    await wait_until(lambda: echoes(stack, mid), timeout=20, every=0.5)
