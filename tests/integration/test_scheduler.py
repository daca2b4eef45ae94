"""daemon.processes.scheduler.Scheduler with real jobs; the clock is the test's, so no minute is
waited."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import msgspec
import pytest

from base.dotenv import render
from contracts.daemon.machine_files import CronJob, CronTable
from contracts.daemon.rpc import WriteFileParams
from daemon.processes import tools
from daemon.processes.env import ProcessEnv
from daemon.processes.procs import ProcessManager
from daemon.processes.scheduler import Scheduler
from daemon.supervision.state import CronRun
from tests.integration.test_process_manager import group_members
from tests.waiters import wait_until

ENVIRON = {"PATH": os.environ["PATH"], "FLEET_MACHINE_TOKEN": "never-shown"}
NOON = datetime(2025, 1, 6, 12, 0, 30)


@dataclass
class Clock:
    now: datetime = NOON

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Runs:
    """Every record() call, in order."""

    calls: list[tuple[str, CronRun]] = field(default_factory=list)

    def __call__(self, name: str, run: CronRun) -> None:
        self.calls.append((name, run))

    def finished(self, name: str) -> list[CronRun]:
        return [r for n, r in self.calls if n == name and r.finished_at is not None]


@pytest.fixture
async def procs(home: Path) -> AsyncIterator[ProcessManager]:
    env = ProcessEnv(home, ENVIRON)
    async with ProcessManager(home, env=env, on_change=lambda: None) as manager:
        yield manager


def write(home: Path, path: str, content: str) -> None:
    tools.write_file(home, WriteFileParams(path=path, content=content))


def write_table(home: Path, *jobs: CronJob) -> None:
    content = msgspec.json.encode(CronTable(jobs=list(jobs))).decode()
    write(home, "~/.fleet/cron.json", content)


def job(name: str, schedule: str, *command: str, timeout_s: float = 60.0) -> CronJob:
    return CronJob(name=name, schedule=schedule, command=list(command), timeout_s=timeout_s)


def scheduler(
    home: Path, runs: Runs, clock: Clock, procs: ProcessManager | None = None
) -> Scheduler:
    return Scheduler(home, env=ProcessEnv(home, ENVIRON), record=runs, procs=procs, poll_s=0.02,
                     clock=clock)  # fmt: skip


async def test_the_loop_runs_a_due_job_and_records_it(home: Path) -> None:
    write(home, "~/.fleet/.env", render({"FOO": "from .env"}))
    script = 'echo "$FOO ${FLEET_MACHINE_TOKEN-unset} $PWD"'
    write_table(home, job("hello", "* * * * *", "sh", "-c", script))
    runs, clock = Runs(), Clock()
    async with scheduler(home, runs, clock) as s:
        assert s.next_runs() == {"hello": datetime(2025, 1, 6, 12, 1)}
        clock.now = datetime(2025, 1, 6, 12, 1, 0, 5)  # the loop's next tick finds it due
        await wait_until(lambda: len(runs.finished("hello")) == 1)
        assert s.next_runs() == {"hello": datetime(2025, 1, 6, 12, 2)}
    [started, finished] = [r for _, r in runs.calls]
    assert started.finished_at is None  # recorded at the start too: the state shows it running
    assert (finished.exit_code, finished.timed_out) == (0, False)
    assert finished.started_at == started.started_at <= (finished.finished_at or 0)
    log = (home / ".fleet/logs/cron-hello.log").read_text()
    assert log == f"from .env unset {home}\n"


async def test_a_failing_job_records_its_exit_code(home: Path) -> None:
    (home / "jobs").mkdir()
    failing = CronJob(name="fail", schedule="0 * * * *", command=["sh", "-c", "exit 7"], cwd="jobs")
    write_table(home, failing, job("missing", "0 * * * *", "/nonexistent/program"))
    runs, clock = Runs(), Clock()
    async with scheduler(home, runs, clock) as s:
        assert s.run_due(datetime(2025, 1, 6, 12, 59)) == []
        assert sorted(s.run_due(datetime(2025, 1, 6, 13, 0))) == ["fail", "missing"]
        await wait_until(lambda: len(runs.finished("fail")) == len(runs.finished("missing")) == 1)
        assert s.next_runs()["fail"] == datetime(2025, 1, 6, 14, 0)
    assert runs.finished("fail")[0].exit_code == 7
    assert runs.finished("missing")[0].exit_code == 127
    assert "cannot run" in (home / ".fleet/logs/cron-missing.log").read_text()


async def test_a_bad_table_keeps_the_previous_one(home: Path) -> None:
    write_table(home, job("a", "30 12 * * *", "true"))
    async with scheduler(home, Runs(), Clock()) as s:
        before = s.next_runs()
        assert before == {"a": datetime(2025, 1, 6, 12, 30)}
        write(home, "~/.fleet/cron.json", "{not json")
        s.reload()
        assert s.table_error is not None
        assert s.next_runs() == before
        write_table(home, job("a", "61 * * * *", "true"))
        s.reload()
        assert s.table_error is not None
        assert "minute" in s.table_error
        assert s.next_runs() == before
        write_table(home, job("a", "1 * * * *", "x"), job("a", "2 * * * *", "y"))
        s.reload()
        assert "second job named 'a'" in (s.table_error or "")
        # A good table again: taken, and the loop picks it up on its own.
        write_table(home, job("a", "30 12 * * *", "true"), job("b", "45 * * * *", "true"))
        await wait_until(lambda: s.next_runs().keys() == {"a", "b"})
        assert s.table_error is None
        assert s.next_runs()["a"] == before["a"]  # unchanged job: same next run


async def test_a_job_is_killed_at_its_timeout(home: Path, procs: ProcessManager) -> None:
    script = "echo started; sleep 300 & sleep 300"
    write_table(home, job("slow", "* * * * *", "sh", "-c", script, timeout_s=0.3))
    runs = Runs()
    async with scheduler(home, runs, Clock(), procs) as s:
        assert s.run_due(datetime(2025, 1, 6, 12, 1)) == ["slow"]
        await wait_until(lambda: [r.kind for r in procs.records()] == ["cron"])
        cron_pid = procs.records()[0].pid
        await wait_until(lambda: len(runs.finished("slow")) == 1, timeout=10)
    [run] = runs.finished("slow")
    assert (run.timed_out, run.exit_code) == (True, -signal.SIGTERM)
    assert procs.records() == []
    await wait_until(lambda: group_members(cron_pid) == [])  # nothing it started is left


async def test_overlapping_runs_are_skipped_and_stop_ends_the_run(home: Path) -> None:
    gate = home / "go"
    script = f"while [ ! -e {gate} ]; do sleep 0.01; done"
    write_table(home, job("long", "* * * * *", "sh", "-c", script))
    runs = Runs()
    s = scheduler(home, runs, Clock())
    async with s:
        assert s.run_due(datetime(2025, 1, 6, 12, 1)) == ["long"]
        assert s.run_due(datetime(2025, 1, 6, 12, 2)) == []  # the 12:01 run still going
        assert s.next_runs()["long"] == datetime(2025, 1, 6, 12, 3)
    # Leaving the block (a daemon stopping or restarting) ends the run, recorded with no code.
    assert [(r.exit_code, r.finished_at is not None) for r in runs.finished("long")] == [
        (None, True)
    ]
    await s.__aexit__(None, None, None)  # safe twice
