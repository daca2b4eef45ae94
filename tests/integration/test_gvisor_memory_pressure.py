"""Memory pressure on real runsc sandboxes (docs/stop-start.md#memory-pressure): the platform's
view of the host's memory is a small memory cgroup of the test's own (``FLEET_MEMORY_CGROUP``),
not the real host; a hog in that group takes it under ``FLEET_PAUSE_UNDER_MB``, and the idle
gvisor machine is paused (``by: memory-pressure``), the busy one is untouched, and nothing is
killed: the hog, both machines' processes (the paused one's go on after its resume, with the
same pid and count) and the group's OOM count. The rules (who, how many, hysteresis):
tests/fast/test_memory_pressure.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from contracts.bus.events import MachinePauseRequested, PauseBy
from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.host_memory import cgroup_room_mb
from tests.conftest import running_stack
from tests.gvisor_stack import gvisor_settings
from tests.integration.test_gvisor import answers, ready_gvisor
from tests.integration.test_gvisor_pause import events_of
from tests.waiters import still_running_after, wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

MIB = 1024 * 1024
#: The group the platform reads as the host: small, so that a hog of a few hundred MiB fills it.
LIMIT_MB = 512
UNDER_MB = 192
#: What the hog takes: past the mark, well under the group's limit (the kernel never kills it).
HOG_MB = LIMIT_MB - UNDER_MB + 64
IDLE_MIN_S = 10.0
#: Counts in memory and writes "<pid> <count>" to its file each tick.
COUNTER = r"""
import os, sys, time
n = 0
while True:
    n += 1
    with open(sys.argv[1] + '.tmp', 'w') as f:
        f.write(f'{os.getpid()} {n}')
    os.replace(sys.argv[1] + '.tmp', sys.argv[1])
    time.sleep(0.2)
"""
#: Joins the group given, takes ``HOG_MB`` (every page touched), says so, and holds it.
HOG = r"""
import os, sys, time
open(sys.argv[1] + '/cgroup.procs', 'w').write(str(os.getpid()))
held = bytearray(b'\x01') * (int(sys.argv[2]) << 20)
print('held', flush=True)
while True:
    time.sleep(60)
"""


@pytest.fixture(scope="module")
def memory_group() -> Iterator[Path]:
    """A memory cgroup of the test's own with a limit of ``LIMIT_MB`` (v2 where the unified
    hierarchy offers memory, else v1's), removed after."""
    root = Path("/sys/fs/cgroup")
    v2 = "memory" in (root / "cgroup.controllers").read_text(errors="ignore").split() if (
        root / "cgroup.controllers").exists() else False  # fmt: skip
    group = (root if v2 else root / "memory") / f"fleet-test-pressure-{secrets.token_hex(4)}"
    group.mkdir()
    try:
        (group / ("memory.max" if v2 else "memory.limit_in_bytes")).write_text(str(LIMIT_MB * MIB))
        yield group
    finally:
        # The test kills its hog; one it could not is killed here (and the group emptied).
        assert still_running_after(hog_pids(group), 10) == []
        group.rmdir()


def hog_pids(group: Path) -> list[int]:
    pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def oom_kills(group: Path) -> int:
    """How many processes the kernel's OOM killer ended in the group."""
    for name in ("memory.oom_control", "memory.events"):
        with contextlib.suppress(OSError):
            for line in (group / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    raise AssertionError(f"no oom_kill count in {group}")


@pytest.fixture(scope="module")
def stack_settings(
    tmp_path_factory: pytest.TempPathFactory, memory_group: Path
) -> Iterator[Settings]:
    with gvisor_settings(
        tmp_path_factory.mktemp("gvisor-pressure"), runtime="gvisor",
        memory_cgroup=str(memory_group), pause_under_mb=UNDER_MB, pause_per_round=2,
        pause_idle_min_s=IDLE_MIN_S, memory_pressure_tick_s=0.5,
        autopause_idle_s=0,  # only memory pressure pauses here
    ) as made:  # fmt: skip
        yield made


@pytest_asyncio.fixture(loop_scope="module")
async def stack(stack_settings: Settings) -> AsyncIterator[FleetClient]:
    async with running_stack(stack_settings) as client:
        yield client


async def counting(stack: FleetClient, mid: str, home: Path) -> tuple[int, int]:
    """A counter started in the machine; (its pid inside, the process's pid as listed)."""
    await stack.write_file(mid, "counter.py", COUNTER)
    proc = await stack.start_process(mid, ["python3", "-I", "counter.py", "count"], tag="count")
    await wait_until(lambda: count(home)[1] >= 3, timeout=180)
    return count(home)[0], proc.pid


def count(home: Path) -> tuple[int, int]:
    try:
        pid, n = (home / "count").read_text().split()
    except (OSError, ValueError):
        return 0, 0
    return int(pid), int(n)


@pytest.mark.timeout(900)
async def test_under_pressure_the_idle_machine_is_paused_the_busy_one_untouched_nothing_killed(
    stack: FleetClient, stack_settings: Settings, memory_group: Path
) -> None:
    homes = stack_settings.data_path.resolve() / "machines"
    idle, busy = await ready_gvisor(stack, "pressed-idle"), await ready_gvisor(stack, "busy")
    counters = {m: await counting(stack, m, homes / m / "home") for m in (idle, busy)}
    calls = 0
    stop = asyncio.Event()

    async def keep_busy() -> None:
        nonlocal calls
        while not stop.is_set():
            assert (await stack.exec(busy, ["true"], timeout_s=60)).exit_code == 0
            calls += 1
            await asyncio.sleep(0.5)  # a user's pace, not a wait for a state

    user = asyncio.create_task(keep_busy())
    hog = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOG, str(memory_group), str(HOG_MB), stdout=subprocess.PIPE
    )
    try:
        assert hog.stdout is not None
        assert await asyncio.wait_for(hog.stdout.readline(), 120) == b"held\n"
        room = cgroup_room_mb(memory_group)
        assert room is not None
        assert room < UNDER_MB
        got = await stack.wait_for(idle, ["paused", "failed"], timeout_s=300)
        assert got.status == "paused", got.status_reason
        assert got.status_reason.startswith("host memory low: "), got.status_reason
        [asked] = await events_of(stack, idle, MachinePauseRequested)
        assert isinstance(asked, MachinePauseRequested)
        assert asked.by is PauseBy.MEMORY_PRESSURE
        # Rounds go on under pressure while the busy machine is used: it is never paused.
        seen = calls
        await wait_until(lambda: calls >= seen + 10, timeout=120)
        assert (await stack.get_machine(busy)).status == "ready"
        assert await events_of(stack, busy, MachinePauseRequested) == []
        assert hog.returncode is None
    finally:
        stop.set()
        await user
        hog.kill()
        await hog.wait()
    assert oom_kills(memory_group) == 0
    # Nothing of either machine was lost: the busy one's counter runs on, and the paused one's
    # goes on after its resume, the same process from where it was.
    at_pause = count(homes / idle / "home")[1]
    await stack.resume_machine(idle)
    ready = await stack.wait_for(idle, ["ready", "failed"], timeout_s=300)
    assert ready.status == "ready", ready.status_reason
    await wait_until(lambda: count(homes / idle / "home")[1] > at_pause, timeout=120)
    assert count(homes / idle / "home")[1] < at_pause + 1000
    for mid in (busy, idle):
        await wait_until(lambda m=mid: answers(stack, m), timeout=120, every=0.5)
        inside, listed = counters[mid]
        assert count(homes / mid / "home")[0] == inside
        running = [(p.pid, p.state) for p in await stack.list_processes(mid) if p.tag == "count"]
        assert running == [(listed, "running")]
