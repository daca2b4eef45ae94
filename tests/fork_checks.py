"""What the fork and snapshot tests check for each provider (``local`` and ``docker``): one
scenario, written once, driven through the gateway against real daemons; where a machine's home
is on this host (a directory, or a Docker volume's) comes from the test."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

from contracts.bus.events import HomeCopy, MachineProvisioned
from contracts.status import MachineStatus
from fleet.client import FleetClient
from tests.integration.test_sessions import SHELL, open_term
from tests.stop_checks import ready_machine
from tests.waiters import wait_until

HomeOf = Callable[[str], Awaitable[Path]]

#: A home of tens of MiB: 8 files of 4 MiB, random.
DATA_FILES, DATA_MIB = 8, 4
#: Each machine's own file: a fork restarts its source's background processes (this one too),
#: and the copy of the source's file must stay as the fork got it.
APPENDER = (
    'i=0; while :; do echo "line $i $(date +%s%N) end"; i=$((i+1)); '
    'done > ~/seq-"$FLEET_MACHINE_ID".txt'
)
LINE = re.compile(rb"line (\d+) (\d+) end")


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


async def fork_is_one_instant(
    stack: FleetClient, provider: str, home_of: HomeOf, cow: bool
) -> tuple[str, str, HomeCopy]:
    """A fork of a running machine has its tree as of one instant (an appended file: a prefix
    with no torn line), the source's terminal echoes all along and its background process runs
    on, and writes do not cross; (source, fork, how the fork's home was copied)."""
    mid = await ready_machine(stack, "forked", provider)
    src = await home_of(mid)
    make = (f"mkdir -p ~/data && for i in $(seq {DATA_FILES}); do "
            f"head -c {DATA_MIB}M /dev/urandom > ~/data/f$i; done")  # fmt: skip
    assert (await stack.exec(mid, ["sh", "-c", make], timeout_s=60)).exit_code == 0
    appender = await stack.start_process(mid, ["sh", "-c", APPENDER], tag="appender")
    session = await stack.open_session(mid, SHELL)
    term = await open_term(stack, mid, session.session_id)
    seq = f"seq-{mid}.txt"
    await wait_until(lambda: (src / seq).stat().st_size > 10_000, timeout=20)

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

    dst = await home_of(fork)
    assert tree_digest(dst / "data") == tree_digest(src / "data")
    lines = len(appended((dst / seq).read_bytes()))
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
    await wait_until(lambda: (src / seq).stat().st_size > 2 * lines * 30, timeout=20)
    if not cow:  # its processes were frozen for the copy: the appender paused that long
        stamps = appended((src / seq).read_bytes().rpartition(b"\n")[0] + b"\n")
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
    return mid, fork, copied


async def forks_outlive_their_source(stack: FleetClient, provider: str, count: int) -> list[str]:
    """``count`` forks at once of a stopped machine (which stays stopped) outlive its archive,
    and a chain of stops, starts and forks keeps every file written in every life; every
    machine of it, the source's forks first."""
    mid = await ready_machine(stack, "chain", provider)
    await stack.write_file(mid, "~/life-1.txt", "one\n")
    await stack.stop_machine(mid)
    await stack.wait_for(mid, ("stopped",), timeout_s=60)
    forks = await ready_forks(stack, mid, count)
    assert (await stack.get_machine(mid)).status is MachineStatus.STOPPED
    await stack.archive_machine(mid)
    await stack.wait_for(mid, ("archived",), timeout_s=60)
    first = forks[0]
    await stack.write_file(first, "~/life-2.txt", "two\n")
    await stop_and_start(stack, first)
    [second] = await ready_forks(stack, first, 1)
    await stack.write_file(second, "~/life-3.txt", "three\n")
    await stop_and_start(stack, second)
    got = await stack.exec(second, ["sh", "-c", "cat ~/life-1.txt ~/life-2.txt ~/life-3.txt"])
    assert got.stdout == "one\ntwo\nthree\n"
    for other in forks[1:]:  # the others are as the source was
        got = await stack.exec(other, ["sh", "-c", "cat ~/life-*.txt"])
        assert got.stdout == "one\n"
    return [*forks, second]


async def stop_and_start(stack: FleetClient, mid: str) -> None:
    await stack.stop_machine(mid)
    await stack.wait_for(mid, ("stopped",), timeout_s=60)
    await stack.start_machine(mid)
    done = await stack.wait_for(mid, ("ready", "failed"), timeout_s=120)
    assert done.status is MachineStatus.READY, done.status_reason


async def snapshot_makes_identical_machines(
    stack: FleetClient, provider: str, home_of: HomeOf, how: str
) -> list[str]:
    """Two machines made from a snapshot are identical (the source's later writes are in
    neither); deleting the snapshot breaks neither, and both start again after a stop."""
    mid = await ready_machine(stack, "snapped", provider)
    await stack.exec(mid, ["sh", "-c", "mkdir -p ~/w && head -c 3M /dev/urandom > ~/w/blob"])
    snap = await stack.snapshot_machine(mid, "known-good")
    assert snap.how == how
    await stack.write_file(mid, "~/w/after.txt", "after the snapshot\n")
    inst = snap.instance_id
    made = [await stack.create_from_snapshot(inst, snap.id) for _ in range(2)]
    for m in made:
        assert m.provider == provider
        done = await stack.wait_for(m.id, ("ready", "failed"), timeout_s=120)
        assert done.status is MachineStatus.READY, done.status_reason
    trees = [tree_digest(await home_of(m.id) / "w") for m in made]
    assert trees[0] == trees[1] == {"blob": tree_digest(await home_of(mid) / "w")["blob"]}
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
    return [m.id for m in made]
