"""One background process slot and the OS-level steps on it: spawn, wait for exit, terminate.

``daemon.processes.procs.ProcessManager`` decides *when* (supervision, restart policy, the state
file,
the RPC methods); this module does *how* for one slot, without knowing about the others. A
restart puts a new pid in the same slot, so its tag and log file stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from base import procinfo
from base.backoff import backoff_s
from contracts.daemon.machine_files import LOG_DIR
from contracts.daemon.rpc import ProcessInfo
from contracts.errors import ToolError
from daemon.processes.children import child_exit, open_log, reap, signal_group, wait_gone
from daemon.processes.env import ProcessEnv
from daemon.processes.tools import start_failed
from daemon.supervision.state import TrackedProcess

#: An adopted process is not (necessarily) our child, so nothing tells us when it exits.
ADOPTED_POLL_S = 0.5
BACKOFF_FIRST_S = 0.5
BACKOFF_CAP_S = 30.0
#: A process that ran this long before exiting starts its backoff from the beginning again.
BACKOFF_RESET_S = 60.0
#: After SIGKILL only an uninterruptible sleep (a hung NFS mount) can keep a process alive.
KILL_WAIT_S = 10.0


@dataclass(eq=False)
class ProcessSlot:
    """One process slot: a restart puts a new pid in the same slot (tag and log stay)."""

    rec: TrackedProcess
    #: Set while it is our child, to reap it and get its exit code. Not asyncio's process:
    #: that kills its child when collected, and this one must outlive a handover.
    proc: subprocess.Popen[bytes] | None = None
    supervisor: asyncio.Task[None] | None = None
    #: Held across every change of process (exit, restart, kill): one at a time per slot.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Killed on purpose: never restarted again.
    stopping: bool = False
    spawned: float = field(default_factory=time.monotonic)
    #: Quick exits in a row: the backoff exponent.
    streak: int = 0

    @property
    def live(self) -> bool:
        return self.rec.pid > 0 and self.rec.state == "running"  # pid 0: still starting

    def info(self) -> ProcessInfo:
        r = self.rec
        return ProcessInfo(
            pid=r.pid,
            tag=r.tag,
            command=list(r.command),
            cwd=r.cwd,
            restart=r.restart,
            state=r.state,
            exit_code=r.exit_code,
            restarts=r.restarts,
            started_at=r.started_at,
            log_path=r.log_path or "",
        )

    async def spawn(self, home: Path, machine_env: ProcessEnv) -> None:
        """Start the slot's command (again), with the machine's environment as it is now;
        ToolError if it cannot be started."""
        rec = self.rec
        rel = rec.log_path or (
            f"{LOG_DIR}/{rec.tag}.log" if rec.tag else f"{LOG_DIR}/.new-{secrets.token_hex(4)}.log"
        )
        env = machine_env(rec.env)
        rec.env_sha256 = machine_env.dotenv.digest  # what this process sees, for on-env-change
        try:
            fd = open_log(home / rel)
        except OSError as exc:
            raise ToolError(f"cannot open {rel}: {exc.strerror or exc}") from None
        try:
            proc = subprocess.Popen(  # noqa: ASYNC220 - a fork and exec, as asyncio's own
                rec.command,
                cwd=rec.cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                start_new_session=True,  # its own group: a kill reaches its children too
            )
        except OSError as exc:
            if rec.log_path is None:
                (home / rel).unlink(missing_ok=True)
            raise start_failed(rec.command[0], exc) from None
        finally:
            os.close(fd)
        if rec.log_path is None and rec.tag is None:
            named = f"{LOG_DIR}/{proc.pid}.log"  # named by pid, known only now
            os.replace(home / rel, home / named)
            rel = named
        rec.log_path = rel
        rec.pid, rec.start_ticks = proc.pid, procinfo.start_ticks(proc.pid) or 0
        rec.state, rec.exit_code, rec.started_at = "running", None, time.time()
        self.proc, self.spawned = proc, time.monotonic()

    def next_backoff(self) -> float:
        """The wait before the next restart; grows with each quick exit in a row."""
        if time.monotonic() - self.spawned >= BACKOFF_RESET_S:
            self.streak = 0
        delay = backoff_s(self.streak + 1, base=BACKOFF_FIRST_S, cap=BACKOFF_CAP_S, jitter=False)
        self.streak = min(self.streak + 1, 16)
        return delay

    async def wait_exit(self) -> int | None:
        rec = self.rec
        if not self.live:
            return rec.exit_code
        if self.proc is not None:
            return await child_exit(self.proc, ADOPTED_POLL_S)
        await wait_gone(rec.pid, rec.start_ticks, ADOPTED_POLL_S)
        return reap(rec.pid)[1]

    async def terminate(self, grace_s: float) -> int | None:
        """SIGTERM the group, SIGKILL it after the grace period; the leader's exit code."""
        rec = self.rec
        signal_group(rec.pid, rec.start_ticks, signal.SIGTERM)
        try:
            async with asyncio.timeout(grace_s):
                return await self.wait_exit()
        except TimeoutError:
            signal_group(rec.pid, rec.start_ticks, signal.SIGKILL)
        try:
            async with asyncio.timeout(KILL_WAIT_S):
                return await self.wait_exit()
        except TimeoutError:
            raise ToolError(f"process {rec.pid} survived SIGKILL for {KILL_WAIT_S}s") from None
        finally:
            # Members that outlived the leader (a `cmd &` the leader never waited for).
            signal_group(rec.pid, rec.start_ticks, signal.SIGKILL)


async def end_foreign(rec: TrackedProcess, grace_s: float) -> None:
    """End an exec or cron child: its own caller reaps it, so only watch it go."""
    signal_group(rec.pid, rec.start_ticks, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(grace_s):
            await wait_gone(rec.pid, rec.start_ticks, 0.05)
    signal_group(rec.pid, rec.start_ticks, signal.SIGKILL)
