"""A child's output read as it is written and bounded then (base/bounded_output.py), on real
child processes: what is kept, that the child still runs to its end, a process left holding
the pipes, a timeout, a cancellation. On a real runsc sandbox and the provisioner's memory:
tests/integration/test_gvisor_root_output.py."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from base.bounded_output import CappedSink, json_text, run_capped, run_capped_sync

CAP = 64 * 1024
#: Writes far more than CAP to stdout and a line to stderr; ``head`` exits 0 only if each
#: byte was read (unread, it blocks on the full pipe, and dies of SIGPIPE once let go).
FLOOD = ["sh", "-c", "head -c 200M /dev/zero && echo done >&2"]


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    """Process groups a test's command leaves running, killed at its end."""
    groups: list[int] = []
    yield groups
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def holder(pid_file: Path) -> list[str]:
    """Leaves a process behind holding the pipes (its group in ``pid_file``), then exits 0."""
    return ["sh", "-c", f"sleep 600 & echo $$ > {pid_file}; echo started"]


async def test_a_flood_keeps_its_first_bytes_and_the_child_runs_to_its_end() -> None:
    got = await run_capped(FLOOD, cap=CAP, timeout_s=60)
    assert (got.returncode, got.stderr, got.truncated, got.timed_out) == (0, b"done\n", True, False)
    assert got.stdout == bytes(CAP)


def test_a_flood_read_from_a_thread_keeps_its_first_bytes() -> None:
    got = run_capped_sync(FLOOD, cap=CAP, timeout_s=60)
    assert (got.returncode, got.stderr, got.truncated) == (0, b"done\n", True)
    assert got.stdout == bytes(CAP)
    said = got.completed(FLOOD)
    assert (said.returncode, said.stderr, said.truncated) == (0, "done\n", True)


def test_output_under_the_cap_is_whole_and_a_tail_keeps_the_last_bytes() -> None:
    whole = run_capped_sync(["seq", "1", "1000"], cap=CAP, timeout_s=30)
    assert (whole.stdout, whole.truncated) == (b"".join(b"%d\n" % i for i in range(1, 1001)), False)
    tail = run_capped_sync(["seq", "1", "100000"], cap=13, timeout_s=30, keep="tail")
    assert (tail.stdout, tail.truncated) == (b"99999\n100000\n", True)


def test_a_sink_keeps_at_most_its_cap_however_the_chunks_come() -> None:
    head, tail = CappedSink(5), CappedSink(5, keep="tail")
    for chunk in (b"ab", b"cdefgh", b"", b"ijklmnopq", b"r"):
        head.take(chunk)
        tail.take(chunk)
    assert (head.data(), head.truncated, tail.data(), tail.truncated) == (
        b"abcde", True, b"nopqr", True,
    )  # fmt: skip


async def test_a_process_left_holding_the_pipes_does_not_hold_up_the_answer(
    tmp_path: Path, leftovers: list[int]
) -> None:
    async with asyncio.timeout(30):
        got = await run_capped(holder(tmp_path / "pgid"), cap=CAP, timeout_s=600)
    leftovers.append(int((tmp_path / "pgid").read_text()))
    assert (got.returncode, got.stdout, got.timed_out) == (0, b"started\n", False)


def test_a_process_left_holding_the_pipes_does_not_hold_up_a_thread(
    tmp_path: Path, leftovers: list[int]
) -> None:
    got = run_capped_sync(holder(tmp_path / "pgid"), cap=CAP, timeout_s=600)
    leftovers.append(int((tmp_path / "pgid").read_text()))
    assert (got.returncode, got.stdout) == (0, b"started\n")


async def test_past_its_timeout_the_child_and_its_group_are_killed(tmp_path: Path) -> None:
    script = f"sleep 600 & echo $! > {tmp_path / 'pid'}; echo begun; wait"
    got = await run_capped(["sh", "-c", script], cap=CAP, timeout_s=0.5)
    assert (got.returncode, got.stdout, got.timed_out) == (-signal.SIGKILL, b"begun\n", True)
    assert not _alive(int((tmp_path / "pid").read_text()))


def test_past_its_timeout_a_thread_gets_timeout_expired_and_the_group_is_killed(
    tmp_path: Path,
) -> None:
    script = f"sleep 600 & echo $! > {tmp_path / 'pid'}; echo begun; wait"
    with pytest.raises(subprocess.TimeoutExpired) as raised:
        run_capped_sync(["sh", "-c", script], cap=CAP, timeout_s=0.5)
    assert raised.value.output == b"begun\n"
    assert not _alive(int((tmp_path / "pid").read_text()))


async def test_a_cancelled_run_kills_its_child(tmp_path: Path) -> None:
    said = tmp_path / "pid"
    os.mkfifo(said)  # the child's write waits for this test to read
    run = asyncio.create_task(
        run_capped(["sh", "-c", f"echo $$ > {said}; exec sleep 600"], cap=CAP, timeout_s=600)
    )
    async with asyncio.timeout(30):
        pid = int(await asyncio.to_thread(said.read_text))
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert not _alive(pid)


async def test_a_run_cancelled_twice_still_kills_and_reaps_its_child(tmp_path: Path) -> None:
    """A service's shutdown may cancel a run again while it cleans up: its child is still
    killed and reaped before the cancellation goes on (a second cancellation had skipped the
    kill, and the loop closed with a disk walk running)."""
    said = tmp_path / "pid"
    os.mkfifo(said)
    run = asyncio.create_task(
        run_capped(["sh", "-c", f"echo $$ > {said}; exec sleep 600"], cap=CAP, timeout_s=600)
    )
    async with asyncio.timeout(30):
        pid = int(await asyncio.to_thread(said.read_text))
    run.cancel()
    await asyncio.sleep(0)  # one turn: the run takes its first cancellation and cleans up
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert not _alive(pid)


def test_json_text_fits_its_budget_whatever_the_bytes() -> None:
    for data in (bytes(100_000), b"\xff" * 100_000, b"\x1b[0m" * 30_000):
        text, cut = json_text(data, 65536)
        assert cut
        assert 60_000 < len(msgspec.json.encode(text)) <= 65536
    assert json_text(b"plain text\n", 65536) == ("plain text\n", False)


def _alive(pid: int, within_s: float = 10.0) -> bool:
    """Whether ``pid`` still runs after ``within_s`` (a SIGKILL takes a moment to land; a
    zombie, its parent gone to init, does not run)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return False
        except (FileNotFoundError, ProcessLookupError):  # gone, or being reaped as it is read
            return False
        time.sleep(0.01)
    return True
