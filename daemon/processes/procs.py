"""Background processes the daemon starts (``process.*``): spawned, supervised, restarted.

They must outlive the daemon (a restart or a self-update must not take a dev server down), so
each runs in its own session with its output appended to a log file, never to a pipe the
daemon holds, and is recorded (pid and /proc start time) in the state file for the next daemon
to re-adopt. Every signal goes to the process group, and only after checking the leader's start
time: a pid reused by an unrelated process is never signalled.

This module keeps the slots and decides when (supervision, restarts, the state file, the RPC
methods); ``daemon.processes.slot`` does the spawning, waiting and signalling for one slot.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import msgspec
import structlog

from base import procinfo
from base.tasks import cancel_and_join
from base.ticker import Ticker
from contracts.daemon.rpc import (
    ProcessInfo,
    ProcessList,
    ProcessLogs,
    ProcessLogsParams,
    ProcessRef,
    ProcessStartParams,
)
from contracts.errors import Conflict, FleetError, NotFound, ToolError
from daemon.processes.children import let_go, reap, tail_lines
from daemon.processes.env import ProcessEnv
from daemon.processes.envload import Signature, signature
from daemon.processes.slot import ProcessSlot, end_foreign
from daemon.processes.tools import working_dir
from daemon.supervision.state import ProcessKind, TrackedProcess

log = structlog.get_logger(__name__)

ENV_RESTART_GRACE_S = 5.0
KEEP_EXITED = 50


class ProcessManager:
    def __init__(
        self,
        home: Path,
        *,
        env: ProcessEnv,
        on_change: Callable[[], None],
        env_poll_s: float = 0.5,
    ) -> None:
        self._home = home
        #: The machine's environment (the daemon's one), the .env's digest with it.
        self._env = env
        self._on_change = on_change
        self._env_seen: Signature = None
        self._watcher = Ticker(env_poll_s, tick=self._watch_env, name="env-watcher",
                               failed_event="process.env_restart_crashed")  # fmt: skip
        #: Slots the manager is responsible for: running, or waiting to be restarted.
        self._managed: list[ProcessSlot] = []
        self._done: deque[ProcessSlot] = deque(maxlen=KEEP_EXITED)
        self._execs: dict[int, TrackedProcess] = {}
        self._closed = False

    async def __aenter__(self) -> ProcessManager:
        for entry in self._managed:  # adopted ones
            if entry.rec.resume and not entry.live:
                await self._resume(entry)
            if entry.supervisor is None:
                entry.supervisor = asyncio.create_task(self._supervise(entry))
        self._env_seen = signature(self._env.dotenv.path)
        await self._watcher.__aenter__()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop supervising; the processes keep running for the next daemon to adopt."""
        self._closed = True
        # First: an env restart in progress may start a supervisor.
        await self._watcher.__aexit__(None, None, None)
        for entry in self._managed:
            task, entry.supervisor = entry.supervisor, None
            await cancel_and_join(task)
            if entry.proc is not None:
                let_go(entry.proc)

    # --- the state file -----------------------------------------------------------------------
    def adopt(self, records: Sequence[TrackedProcess], *, machine_boot: bool = False) -> None:
        """Take over what a previous daemon recorded. Call before entering the context.
        ``machine_boot``: the machine has just started (its supervisor's first daemon), so a
        process recorded running and gone now went down with the machine: it is resumed."""
        for old in records:
            rec = msgspec.structs.replace(old)
            if rec.kind != "process":
                if rec.state == "running" and procinfo.is_alive(rec.pid, rec.start_ticks):
                    self._execs[rec.pid] = rec
                continue
            entry = ProcessSlot(rec)
            entry.spawned = time.monotonic() - max(0.0, time.time() - rec.started_at)
            if rec.state == "running" and not procinfo.is_alive(rec.pid, rec.start_ticks):
                reaped, rec.exit_code = reap(rec.pid)
                rec.state = "exited" if reaped else "lost"
                log.info("process.gone_before_adoption", pid=rec.pid, tag=rec.tag, state=rec.state)
                rec.resume = rec.resume or (machine_boot and old.managed)
            elif rec.state == "running":
                rec.resume = False  # it outlived the machine's stop (no sandbox): nothing to do
                log.info("process.adopted", pid=rec.pid, tag=rec.tag)
            if rec.state == "running" or (rec.restart == "always" and old.managed) or rec.resume:
                self._managed.append(entry)
            else:
                self._done.append(entry)
        self._on_change()

    def records(self) -> list[TrackedProcess]:
        """Managed slots, then recently exited ones, then exec and cron children."""
        for pid, rec in list(self._execs.items()):
            if not procinfo.is_alive(pid, rec.start_ticks):
                del self._execs[pid]
        managed = [msgspec.structs.replace(e.rec, managed=True) for e in self._managed if e.rec.pid]
        done = [msgspec.structs.replace(e.rec, managed=False) for e in self._done if e.rec.pid]
        return [*managed, *done, *(msgspec.structs.replace(r) for r in self._execs.values())]

    def track_exec(
        self, pid: int, command: list[str], cwd: str, *, kind: ProcessKind = "exec"
    ) -> None:
        self._execs[pid] = TrackedProcess(
            pid=pid,
            start_ticks=procinfo.start_ticks(pid) or 0,
            kind=kind,
            command=list(command),
            cwd=cwd,
            started_at=time.time(),
        )
        self._on_change()

    def untrack_exec(self, pid: int) -> None:
        if self._execs.pop(pid, None) is not None:
            self._on_change()

    # --- the RPC methods ----------------------------------------------------------------------
    async def start(self, params: ProcessStartParams) -> ProcessInfo:
        if self._closed:
            raise ToolError("the daemon is stopping; no new processes")
        if params.tag is not None and any(e.rec.tag == params.tag for e in self._managed):
            raise Conflict(f"a process tagged {params.tag!r} is already running")
        cwd = working_dir(self._home, params.cwd)
        rec = TrackedProcess(
            pid=0,
            start_ticks=0,
            kind="process",
            command=list(params.command),
            cwd=str(cwd),
            tag=params.tag,
            env=params.env,
            restart=params.restart,
            started_at=time.time(),
        )
        entry = ProcessSlot(rec)
        self._managed.append(entry)  # before the await: holds the tag against a concurrent start
        async with entry.lock:  # a stop_all meanwhile waits, then ends it
            try:
                await entry.spawn(self._home, self._env)
            except BaseException:
                self._managed.remove(entry)
                raise
            entry.supervisor = asyncio.create_task(self._supervise(entry))
        log.info("process.started", pid=rec.pid, tag=rec.tag, argv0=rec.command[0])
        self._on_change()
        return entry.info()

    def list(self) -> ProcessList:
        slots = (*self._managed, *reversed(self._done))
        return ProcessList(processes=[e.info() for e in slots if e.rec.pid])

    async def kill(self, ref: ProcessRef, grace_s: float = 5.0) -> ProcessInfo:
        entry = self._find(ref)
        await self._kill_entry(entry, grace_s)
        return entry.info()

    def logs(self, params: ProcessLogsParams) -> ProcessLogs:
        rec = self._find(params).rec
        lines = tail_lines(self._home / rec.log_path, params.tail) if rec.log_path else []
        return ProcessLogs(pid=rec.pid, tag=rec.tag, lines=lines)

    async def stop_all(self, grace_s: float = 5.0) -> None:
        """A real stop of the daemon: end every managed process and exec child, all at once.
        The managed ones are marked to be resumed by the next daemon on this home (the
        machine's next start)."""
        entries = list(self._managed)
        for entry in entries:
            entry.stopping = True
            entry.rec.resume = True
        execs = list(self._execs.values())
        results = await asyncio.gather(
            *(self._kill_entry(e, grace_s) for e in entries),
            *(end_foreign(r, grace_s) for r in execs),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, Exception):
                log.warning("process.stop_failed", error=str(result))

    # --- internals ----------------------------------------------------------------------------
    def _find(self, ref: ProcessRef) -> ProcessSlot:
        for entry in (*self._managed, *reversed(self._done)):
            rec = entry.rec
            if rec.pid and (rec.pid == ref.pid or (ref.tag is not None and rec.tag == ref.tag)):
                return entry
        what = f"pid {ref.pid}" if ref.pid is not None else f"tag {ref.tag!r}"
        raise NotFound(f"no process with {what}")

    async def _kill_entry(self, entry: ProcessSlot, grace_s: float) -> None:
        if entry not in self._managed:
            return  # already over
        entry.stopping = True
        async with entry.lock:
            task, entry.supervisor = entry.supervisor, None
            await cancel_and_join(task)
            if entry.live:
                self._mark_exited(entry, await entry.terminate(grace_s))
            self._finish(entry)
        log.info("process.killed", pid=entry.rec.pid, tag=entry.rec.tag)

    async def _resume(self, entry: ProcessSlot) -> None:
        """Start again a process the machine's stop ended (its restart policy aside)."""
        async with entry.lock:
            entry.rec.resume = False
            if not Path(entry.rec.cwd).is_dir():
                # The home moved since (a warm-pool machine's slot home, renamed at its claim,
                # is mounted at the machine's own path from its next start on).
                log.info("process.cwd_gone", tag=entry.rec.tag, cwd=entry.rec.cwd)
                entry.rec.cwd = str(self._home)
            await self._respawn(entry, "machine started")
        if not entry.live:  # it could not start: listed as exited, not supervised
            self._finish(entry)

    async def _supervise(self, entry: ProcessSlot) -> None:
        """Wait for the process to exit; restart it if its policy says so."""
        try:
            while True:
                code = await entry.wait_exit()
                async with entry.lock:
                    self._mark_exited(entry, code)
                    if entry.stopping or entry.rec.restart != "always":
                        self._finish(entry)
                        return
                    delay = entry.next_backoff()
                await asyncio.sleep(delay)
                async with entry.lock:
                    if entry.stopping:
                        return
                    await self._respawn(entry, "exited")
        except (OSError, FleetError) as exc:
            log.error("process.supervise_failed", pid=entry.rec.pid, tag=entry.rec.tag,
                      error=repr(exc))  # fmt: skip
        except Exception as exc:  # task boundary: log the unexpected with context
            log.exception("process.supervise_crashed", pid=entry.rec.pid, tag=entry.rec.tag,
                          error=repr(exc))  # fmt: skip

    async def _respawn(self, entry: ProcessSlot, reason: str) -> None:
        old_pid = entry.rec.pid
        try:
            await entry.spawn(self._home, self._env)
        except ToolError as exc:
            # Left exited: "always" tries again after the next backoff, others stay down.
            log.warning("process.restart_failed", pid=old_pid, tag=entry.rec.tag, error=str(exc))
            return
        entry.rec.restarts += 1
        log.info(
            "process.restarted",
            pid=entry.rec.pid,
            old_pid=old_pid,
            tag=entry.rec.tag,
            reason=reason,
            restarts=entry.rec.restarts,
        )
        self._on_change()

    def _mark_exited(self, entry: ProcessSlot, code: int | None) -> None:
        if not entry.live:
            return
        entry.rec.state, entry.rec.exit_code, entry.proc = "exited", code, None
        log.info("process.exited", pid=entry.rec.pid, tag=entry.rec.tag, exit_code=code)
        self._on_change()

    def _finish(self, entry: ProcessSlot) -> None:
        if entry in self._managed:
            self._managed.remove(entry)
            self._done.append(entry)
            self._on_change()

    async def _watch_env(self) -> None:
        now = signature(self._env.dotenv.path)
        if now == self._env_seen:
            return
        self._env_seen = now
        self._env.dotenv.load()  # re-read (and hash) only when the file moved
        try:
            await self._env_changed()
        except (OSError, FleetError) as exc:
            log.error("process.env_restart_failed", error=repr(exc))

    async def _env_changed(self) -> None:
        digest = self._env.dotenv.digest
        entries = [e for e in self._managed if e.live and e.rec.restart == "on-env-change"
                   and e.rec.env_sha256 != digest]  # fmt: skip
        if not entries:  # a no-op push (the same bytes again) restarts nothing
            log.info("process.env_unchanged", sha256=digest)
            return
        log.info("process.env_changed", restarting=len(entries), sha256=digest)
        results = await asyncio.gather(
            *(self._restart(e, "env-changed") for e in entries), return_exceptions=True
        )
        for entry, result in zip(entries, results, strict=True):
            if isinstance(result, Exception):
                log.warning("process.restart_failed", pid=entry.rec.pid, error=str(result))

    async def _restart(self, entry: ProcessSlot, reason: str) -> None:
        async with entry.lock:
            if entry.stopping or not entry.live:
                return
            task, entry.supervisor = entry.supervisor, None
            await cancel_and_join(task)
            self._mark_exited(entry, await entry.terminate(ENV_RESTART_GRACE_S))
            await self._respawn(entry, reason)
            entry.supervisor = asyncio.create_task(self._supervise(entry))
