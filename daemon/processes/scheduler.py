"""The cron scheduler: runs the jobs of ``~/.fleet/cron.json`` at the minutes they name.

Times are the machine's local time, as in crontab(5). Each job's next run is computed when the
table is loaded and again after each run, and a job runs when that time has come: a clock that
jumps forward (suspend, DST) runs a missed job once, never once per missed minute. A job runs
as an argv in its own process group, output appended to ``~/.fleet/logs/cron-<name>.log``,
and is killed at its timeout.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

import msgspec
import structlog

from base import procinfo
from base.tasks import OwnedTasks
from base.ticker import Ticker
from contracts.daemon.cron import Schedule, next_run, parse_schedule
from contracts.daemon.machine_files import CRON_FILE, LOG_DIR, CronJob, CronTable
from contracts.errors import FleetError
from daemon.processes.children import open_log, signal_group
from daemon.processes.env import ProcessEnv
from daemon.processes.envload import Signature, signature
from daemon.processes.procs import ProcessManager
from daemon.processes.tools import working_dir
from daemon.supervision.state import CronRun

log = structlog.get_logger(__name__)

#: After a job's timeout: how long SIGTERM has before SIGKILL.
TIMEOUT_GRACE_S = 5.0
_DECODER = msgspec.json.Decoder(CronTable)


def _local_now() -> datetime:
    return datetime.now()  # naive local time: crontab schedules are in the machine's zone


@dataclass
class _Job:
    job: CronJob
    schedule: Schedule
    next: datetime | None


class Scheduler:
    def __init__(
        self,
        home: Path,
        *,
        env: ProcessEnv,
        record: Callable[[str, CronRun], None],
        procs: ProcessManager | None = None,
        poll_s: float = 1.0,
        clock: Callable[[], datetime] = _local_now,
    ) -> None:
        self._home = home
        self._env = env
        self._record = record
        self._procs = procs
        self._clock = clock
        self._path = home / CRON_FILE
        self._jobs: dict[str, _Job] = {}
        #: Why the file on disk is not the table in use (None: it is).
        self.table_error: str | None = None
        self._seen: Signature = None
        self._loaded = False
        #: The run under way of each job (by name), and all of them (ended on exit).
        self._running: dict[str, asyncio.Task[None]] = {}
        self._runs = OwnedTasks("cron-runs", failed_event="cron.run_crashed")
        self._ticker = Ticker(poll_s, tick=self._tick, name="cron", failed_event="cron.tick_failed",
                              at_once=True)  # fmt: skip

    async def __aenter__(self) -> Scheduler:
        self.reload()
        await self._ticker.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop scheduling and end runs in progress (their process groups are killed and the
        run recorded): a daemon restart must not wait out an hour-long job."""
        await self._ticker.__aexit__(None, None, None)
        await self._runs.close()

    def next_runs(self) -> dict[str, datetime | None]:
        return {name: job.next for name, job in self._jobs.items()}

    def reload(self) -> None:
        """Re-read cron.json if it changed. A bad file is logged and the old table kept: one
        bad edit must not stop every job."""
        sig = signature(self._path)
        if self._loaded and sig == self._seen:
            return
        self._loaded, self._seen = True, sig
        try:
            jobs = _read_table(self._path) if sig is not None else []
        except (OSError, ValueError, msgspec.DecodeError) as exc:
            self.table_error = str(exc)
            log.warning("cron.table_invalid", path=str(self._path), error=str(exc))
            return
        self.table_error = None
        now, old = self._clock(), self._jobs
        self._jobs = {}
        for job, schedule in jobs:
            kept = old.get(job.name)
            # An unchanged job keeps its next run: editing another job must not shift it.
            due = kept.next if kept and kept.job == job else next_run(schedule, now)
            self._jobs[job.name] = _Job(job, schedule, due)
        log.info("cron.table_loaded", jobs=len(self._jobs))

    def run_due(self, now: datetime) -> list[str]:
        """Start every job whose next run is at or before ``now`` (what the loop does on each
        tick; public so a test can choose ``now``). The names of the jobs started."""
        started: list[str] = []
        for name, job in self._jobs.items():
            if job.next is None or job.next > now:
                continue
            job.next = next_run(job.schedule, now)
            previous = self._running.get(name)
            if previous is not None and not previous.done():
                log.info("cron.run_skipped", name=name, reason="the previous run is still going")
                continue
            task = self._runs.spawn(self._run(job.job), name=f"cron:{name}")
            self._running[name] = task
            task.add_done_callback(functools.partial(self._forget, name))
            started.append(name)
        return started

    def _forget(self, name: str, task: asyncio.Task[None]) -> None:
        if self._running.get(name) is task:
            del self._running[name]

    async def _tick(self) -> None:
        self.reload()
        self.run_due(self._clock())

    async def _run(self, job: CronJob) -> None:
        started = time.time()
        self._record(job.name, CronRun(started_at=started))  # the state file shows it running
        log.info("cron.run_started", name=job.name, argv0=job.command[0])
        code: int | None = None
        timed_out = False
        try:
            code, timed_out = await self._execute(job)
        except OSError as exc:  # the log file or the process group could not be handled
            log.error("cron.run_failed", name=job.name, error=repr(exc))
        except Exception as exc:  # task boundary: the run is still recorded below
            log.exception("cron.run_crashed", name=job.name, error=repr(exc))
        finally:
            finished = time.time()
            run = CronRun(
                started_at=started, finished_at=finished, exit_code=code, timed_out=timed_out
            )
            self._record(job.name, run)
            log.info(
                "cron.run_finished",
                name=job.name,
                exit_code=code,
                timed_out=timed_out,
                duration_s=round(finished - started, 3),
            )

    async def _execute(self, job: CronJob) -> tuple[int | None, bool]:
        """Run it to its end or its timeout: (exit code, timed out). A job that cannot start
        gets 127 (not found) or 126, as from a shell, with the reason in its log."""
        fd = open_log(self._home / LOG_DIR / f"cron-{job.name}.log")
        try:
            cwd = working_dir(self._home, job.cwd)
            proc = await asyncio.create_subprocess_exec(
                *job.command,
                cwd=cwd,
                env=self._env(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                start_new_session=True,  # its own group: the timeout kills what it started too
            )
        except (OSError, FleetError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else exc.message
            os.write(fd, f"fleetd: cannot run {job.command[0]!r}: {reason or exc}\n".encode())
            return (127 if isinstance(exc, FileNotFoundError) else 126), False
        finally:
            os.close(fd)
        return await self._supervise(job, proc, str(cwd))

    async def _supervise(
        self, job: CronJob, proc: asyncio.subprocess.Process, cwd: str
    ) -> tuple[int | None, bool]:
        ticks = procinfo.start_ticks(proc.pid) or 0
        if self._procs is not None:
            self._procs.track_exec(proc.pid, job.command, cwd, kind="cron")
        try:
            async with asyncio.timeout(job.timeout_s):
                return await proc.wait(), False
        except TimeoutError:
            log.warning("cron.run_timed_out", name=job.name, timeout_s=job.timeout_s)
            signal_group(proc.pid, ticks, signal.SIGTERM)
            try:
                async with asyncio.timeout(TIMEOUT_GRACE_S):
                    return await proc.wait(), True
            except TimeoutError:
                signal_group(proc.pid, ticks, signal.SIGKILL)
                return await proc.wait(), True
        finally:
            if proc.returncode is None:  # cancelled: never leave a job running unwatched
                signal_group(proc.pid, ticks, signal.SIGKILL)
                await proc.wait()
            # Whatever it left in the background goes with it, as with tool.execCommand.
            signal_group(proc.pid, ticks, signal.SIGKILL)
            if self._procs is not None:
                self._procs.untrack_exec(proc.pid)


def _read_table(path: Path) -> list[tuple[CronJob, Schedule]]:
    table = _DECODER.decode(path.read_bytes())
    out: list[tuple[CronJob, Schedule]] = []
    names: set[str] = set()
    for i, job in enumerate(table.jobs):
        if job.name in names:
            raise ValueError(f"jobs[{i}]: a second job named {job.name!r}")
        names.add(job.name)
        try:
            out.append((job, parse_schedule(job.schedule)))
        except ValueError as exc:
            raise ValueError(f"jobs[{i}] ({job.name}) schedule: {exc}") from None
    return out
