"""Forking machines, ``local`` provider, every service and real daemons, on both home
filesystems (``btrfs``: copy-on-write homes on a loop-mounted image fleetd makes; ``plain``:
a copy with the source frozen): a fork has the source's tree as of one instant (a file being
appended to holds a prefix with no torn line), the source keeps running (its background
process and its terminal), writes do not cross, and forks are independent of their source
(stopped, archived) and of each other (a chain of stops, starts and forks keeps every file)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import re
from pathlib import Path

import msgspec
import pytest

from contracts.events import MachineProvisioned
from contracts.status import MachineStatus
from fleet.client import FleetClient
from providers import homes_fs
from services.common.settings import Settings
from tests.integration.test_pipeline import home_of
from tests.integration.test_sessions import SHELL, open_term
from tests.stop_checks import ready_machine
from tests.waiters import wait_until

#: A home of tens of MiB: 8 files of 4 MiB, random.
DATA_FILES, DATA_MIB = 8, 4
APPENDER = 'i=0; while :; do echo "line $i $(date +%s%N) end"; i=$((i+1)); done > ~/seq.txt'
LINE = re.compile(rb"line (\d+) (\d+) end")


@pytest.fixture(params=["btrfs", "plain"])
def stack_settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return msgspec.structs.replace(settings, homes_fs=request.param, homes_image_gb=4)


def tree_digest(top: Path) -> dict[str, str]:
    """SHA-256 of every file under ``top``, by relative path."""
    found = {}
    for path in sorted(top.rglob("*")):
        if path.is_file() and not path.is_symlink():
            found[str(path.relative_to(top))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def appended(text: bytes) -> list[float]:
    """``text`` is lines 0..n-1 of the appender, each whole: the time each was written (s)."""
    assert text.endswith(b"\n"), text[-80:]
    lines = [LINE.fullmatch(line) for line in text[:-1].split(b"\n")]
    assert all(lines), text[-200:]
    assert [int(m[1]) for m in lines if m] == list(range(len(lines)))
    return [int(m[2]) / 1e9 for m in lines if m]


async def ready_forks(stack: FleetClient, mid: str, count: int) -> list[str]:
    forks = await stack.fork_machine(mid, count)
    assert len(forks) == count
    done = await asyncio.gather(
        *(stack.wait_for(m.id, ("ready", "failed"), timeout_s=180) for m in forks)
    )
    for m in done:
        assert m.status is MachineStatus.READY, m.status_reason
        assert m.instance_id == forks[0].instance_id
    return [m.id for m in forks]


async def home_copy(stack: FleetClient, mid: str) -> MachineProvisioned:
    async with asyncio.timeout(30):
        async with contextlib.aclosing(stack.events(mid)) as events:
            async for _, event in events:
                if isinstance(event, MachineProvisioned):
                    return event
    raise AssertionError("no provisioned event")


async def test_a_fork_is_the_source_at_one_instant_and_the_source_keeps_running(
    stack: FleetClient, stack_settings: Settings
) -> None:
    settings = stack_settings
    mid = await ready_machine(stack, "forked")
    src = home_of(settings, mid)
    cow = settings.homes_fs == "btrfs"
    assert homes_fs.is_subvolume(src) is cow
    make = (f"mkdir -p ~/data && for i in $(seq {DATA_FILES}); do "
            f"head -c {DATA_MIB}M /dev/urandom > ~/data/f$i; done")  # fmt: skip
    assert (await stack.exec(mid, ["sh", "-c", make], timeout_s=60)).exit_code == 0
    appender = await stack.start_process(mid, ["sh", "-c", APPENDER], tag="appender")
    session = await stack.open_session(mid, SHELL)
    term = await open_term(stack, mid, session.session_id)
    await wait_until(lambda: (src / "seq.txt").stat().st_size > 10_000, timeout=20)

    forked = asyncio.Event()

    async def echoing() -> int:
        n = 0
        while not forked.is_set():
            await term.type(f"echo tick-{n}-$((1+1))\n")
            await term.until(f"tick-{n}-2".encode())
            n += 1
        return n

    ticks = asyncio.create_task(echoing())
    try:
        [fork] = await ready_forks(stack, mid, 1)
    finally:
        forked.set()
    assert await ticks > 1  # it echoed all along the fork
    await term.type("echo still-$((40+2))\n")
    await term.until(b"still-42")  # the terminal lived through the fork

    dst = home_of(settings, fork)
    assert tree_digest(dst / "data") == tree_digest(src / "data")
    lines = len(appended((dst / "seq.txt").read_bytes()))
    assert lines > 0
    copied = (await home_copy(stack, fork)).home_copy
    assert copied is not None
    assert copied.source == mid
    assert copied.how == ("cow" if cow else "copy")
    assert copied.pause_ms == 0 if cow else copied.pause_ms > 0

    # The source's appender never stopped, and the fork's is its own (a new process).
    [still] = [p for p in await stack.list_processes(mid) if p.tag == "appender"]
    assert still.pid == appender.pid
    assert still.state == "running"
    await wait_until(lambda: (src / "seq.txt").stat().st_size > 2 * lines * 30, timeout=20)
    if not cow:  # its processes were frozen for the copy: the appender paused that long
        stamps = appended((src / "seq.txt").read_bytes().rpartition(b"\n")[0] + b"\n")
        gap = max(b - a for a, b in itertools.pairwise(stamps))
        # (the pause counts from all frozen to the thaw: the appender stopped no later)
        assert gap * 1000 >= copied.pause_ms * 0.9, (gap, copied.pause_ms)

    # Writes do not cross.
    await stack.write_file(fork, "~/only-fork.txt", "fork\n")
    await stack.write_file(mid, "~/only-source.txt", "source\n")
    assert not (src / "only-fork.txt").exists()
    assert not (dst / "only-source.txt").exists()
    await stack.exec(fork, ["sh", "-c", "echo changed > ~/data/f1"])
    assert (src / "data" / "f1").stat().st_size == DATA_MIB * 2**20


# btrfs alone: the plain copy is the first test's (and the snapshots'), the rest is the same.
@pytest.mark.parametrize("stack_settings", ["btrfs"], indirect=True)
async def test_forks_of_a_stopped_machine_outlive_their_source_through_stops_and_starts(
    stack: FleetClient, stack_settings: Settings
) -> None:
    settings = stack_settings
    mid = await ready_machine(stack, "chain")
    await stack.write_file(mid, "~/life-1.txt", "one\n")
    await stack.stop_machine(mid)
    await stack.wait_for(mid, ("stopped",), timeout_s=60)
    # 10 at once, of a stopped source, which stays stopped.
    forks = await ready_forks(stack, mid, 10)
    assert (await stack.get_machine(mid)).status is MachineStatus.STOPPED
    await stack.archive_machine(mid)
    first = forks[0]
    await stack.write_file(first, "~/life-2.txt", "two\n")
    await stack.stop_machine(first)
    await stack.wait_for(first, ("stopped",), timeout_s=60)
    await stack.start_machine(first)
    await stack.wait_for(first, ("ready",), timeout_s=120)
    [second] = await ready_forks(stack, first, 1)
    await stack.write_file(second, "~/life-3.txt", "three\n")
    await stack.stop_machine(second)
    await stack.wait_for(second, ("stopped",), timeout_s=60)
    await stack.start_machine(second)
    await stack.wait_for(second, ("ready",), timeout_s=120)
    got = await stack.exec(second, ["sh", "-c", "cat ~/life-1.txt ~/life-2.txt ~/life-3.txt"])
    assert got.stdout == "one\ntwo\nthree\n"
    for other in forks[1:]:  # the others are as the source was
        got = await stack.exec(other, ["sh", "-c", "cat ~/life-*.txt"])
        assert got.stdout == "one\n"
    assert all(homes_fs.is_subvolume(home_of(settings, m)) for m in (*forks, second))


async def test_two_machines_from_a_snapshot_are_identical_and_outlive_it(
    stack: FleetClient, stack_settings: Settings
) -> None:
    settings = stack_settings
    mid = await ready_machine(stack, "snapped")
    await stack.exec(mid, ["sh", "-c", "mkdir -p ~/w && head -c 3M /dev/urandom > ~/w/blob"])
    snap = await stack.snapshot_machine(mid, "known-good")
    assert snap.how == ("cow" if settings.homes_fs == "btrfs" else "copy")
    await stack.write_file(mid, "~/w/after.txt", "after the snapshot\n")
    inst = snap.instance_id
    made = [await stack.create_from_snapshot(inst, snap.id) for _ in range(2)]
    for m in made:
        done = await stack.wait_for(m.id, ("ready", "failed"), timeout_s=120)
        assert done.status is MachineStatus.READY, done.status_reason
    trees = [tree_digest(home_of(settings, m.id) / "w") for m in made]
    assert trees[0] == trees[1] == {"blob": tree_digest(home_of(settings, mid) / "w")["blob"]}
    assert [s.id for s in await stack.list_snapshots(inst)] == [snap.id]
    assert await stack.delete_snapshot(snap.id)
    assert await stack.list_snapshots(inst) == []
    for m in made:
        await stack.stop_machine(m.id)
    for m in made:
        await stack.wait_for(m.id, ("stopped",), timeout_s=60)
        await stack.start_machine(m.id)
    for m in made:
        await stack.wait_for(m.id, ("ready",), timeout_s=120)
        got = await stack.exec(m.id, ["sh", "-c", "ls ~/w"])
        assert got.stdout == "blob\n"
