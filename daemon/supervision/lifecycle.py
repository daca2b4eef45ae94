"""The daemon's life on its machine: the lock, the state file, the control server, background
processes, the cron scheduler, and noticing newer code. The NATS side is in server.py."""

from __future__ import annotations

import os
import time
from contextlib import AsyncExitStack
from typing import Any, Literal, Protocol

import msgspec
import structlog

from base import procinfo
from base.lockfile import DaemonLock
from base.version import git_sha, package_version
from daemon.processes.env import ProcessEnv
from daemon.processes.procs import ProcessManager
from daemon.processes.scheduler import Scheduler
from daemon.settings import DaemonSettings
from daemon.supervision import takeover
from daemon.supervision.control import ControlServer
from daemon.supervision.state import (
    MACHINE_BOOT_VAR,
    CronRun,
    DaemonRunState,
    DaemonState,
    load_state,
    save_state,
)

log = structlog.get_logger(__name__)

#: States a daemon writes while it is alive; found with a dead pid, they mean it crashed.
LIVE_STATES = ("starting", "running", "stopping")

#: ``identity``: this process serves next as another identity (daemon/server.py).
ExitMode = Literal["stop", "exec", "handover", "identity"]


class StopRequest(Protocol):
    def __call__(self, reason: str, mode: ExitMode = "stop") -> None: ...


def effective_state(state: DaemonState) -> tuple[DaemonRunState, str]:
    """What the file says, corrected: a live state whose pid is gone means a crash."""
    if state.state in LIVE_STATES and not procinfo.is_alive(state.pid, state.start_ticks):
        return "crashed", (
            f"pid {state.pid} ended while {state.state} without recording it "
            "(killed, or the machine went down)"
        )
    return state.state, state.state_reason


class Lifecycle:
    def __init__(
        self, settings: DaemonSettings, *, env: ProcessEnv, request_stop: StopRequest
    ) -> None:
        self.settings = settings
        self.home = settings.home_path
        self.lock = DaemonLock(self.home)
        self._request_stop = request_stop
        self._stack = AsyncExitStack()
        # Read once and dropped: neither its processes nor a successor daemon inherit it.
        self.machine_boot = os.environ.pop(MACHINE_BOOT_VAR, None) == "1"
        self.procs = ProcessManager(self.home, env=env, on_change=self.save)
        self.scheduler = Scheduler(self.home, env=env, record=self._cron_ran, procs=self.procs)
        self.control = ControlServer(self.home, status=self.status, stop=request_stop,
                                     handover=self.hand_over_to)  # fmt: skip
        me = os.getpid()
        self.state = DaemonState(
            pid=me, start_ticks=procinfo.start_ticks(me), machine_id=settings.machine_id,
            version=package_version(), git_sha=git_sha(), started_at=time.time(),
            state="starting", state_reason="starting",
        )  # fmt: skip

    async def __aenter__(self) -> Lifecycle:
        # A daemon already running: one that is handing over to us (it started us), else one
        # we take over from if we are newer (takeover.ask_holder raises if we are not).
        mine = (self.state.version, self.state.git_sha)
        handover_from = takeover.ask_holder(self.home, mine)
        self.lock.acquire(handover_from=handover_from)
        try:
            self._take_over(load_state(self.home))
            self.save()
            await self._stack.enter_async_context(self.control)
            self.state.control_port = self.control.port
            await self._stack.enter_async_context(self.procs)
            await self._stack.enter_async_context(self.scheduler)
            self.save()
        except BaseException:
            await self._stack.aclose()
            self.lock.release()
            raise
        return self

    def _take_over(self, previous: DaemonState | None) -> None:
        """Carry over what a previous daemon left: its processes and cron record."""
        if previous is None:
            return
        state, reason = effective_state(previous)
        if state == "crashed":
            log.warning("daemon.previous_crashed", pid=previous.pid, reason=reason)
        self.state.previous = f"pid {previous.pid} {state}: {reason}"
        self.procs.adopt(previous.processes, machine_boot=self.machine_boot)
        self.state.cron = previous.cron

    def hand_over_to(self, pid: int, why: str = "a newer daemon takes over") -> None:
        """Leave the machine to daemon ``pid``: recorded (the supervisor then watches it), then
        stop serving, leaving our background processes to it."""
        self.state.successor_pid = pid
        self.save()
        self._request_stop(f"handing over to pid {pid}: {why}", "handover")

    def running(self, reason: str) -> None:
        self.set_state("running", reason)

    def set_state(self, state: DaemonRunState, reason: str) -> None:
        self.state.state, self.state.state_reason = state, reason
        self.save()

    def save(self) -> None:
        self.state.processes = self.procs.records()
        save_state(self.home, self.state)

    def beat(self) -> None:
        """At every heartbeat: record it."""
        self.state.last_heartbeat = time.time()
        self.save()

    def _cron_ran(self, name: str, run: CronRun) -> None:
        self.state.cron[name] = run
        self.save()

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self.state)
        out["uptimeS"] = round(time.time() - self.state.started_at, 3)
        return out

    async def close(self, *, mode: str, reason: str, error: BaseException | None) -> None:
        """``mode``: ``stop`` ends the background processes too; ``exec``, ``handover`` and
        ``identity`` leave them to the daemon that comes next."""
        try:
            if mode == "stop":
                await self.procs.stop_all()
            await self._stack.aclose()
        finally:
            if error is not None:
                self.set_state("crashed", f"{reason}: {error!r}")
            else:
                self.set_state("stopped", reason)
            if mode == "exec":
                self.lock.keep_for_exec()
            else:
                self.lock.release()
