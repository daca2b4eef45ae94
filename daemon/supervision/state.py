"""The daemon's state file, ``~/.fleet/daemon.state.json`` (mode 0600).

Kept when the daemon exits, with ``state`` and ``stateReason`` saying why: its absence means
the daemon never ran here (or someone cleaned up). The tracked processes are in it, so a
restarted daemon re-adopts them and ``fleet-daemon doctor`` can find runaways. Writes are
atomic (write, fsync, rename); a corrupt file is set aside with a warning, never trusted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path
from typing import Literal

import msgspec
import structlog

from contracts.daemon.machine_files import STATE_FILE
from contracts.daemon.rpc import ProcessState, RestartPolicy

log = structlog.get_logger(__name__)

DaemonRunState = Literal["starting", "running", "stopping", "stopped", "crashed"]
ProcessKind = Literal["process", "exec", "cron"]
#: Set by the machine's supervisor for the first daemon it starts (the machine itself has just
#: started: after a stop, a `fleet up` restart, a host reboot), never for a daemon restarted in
#: place. That daemon starts again the background processes that were running when the machine
#: went down, however it went down (daemon/processes/procs.py).
MACHINE_BOOT_VAR = "FLEET_MACHINE_BOOT"
#: Bumped when the layout changes incompatibly; an older layout is set aside, not misread.
SCHEMA = 1


class TrackedProcess(msgspec.Struct, rename="camel", kw_only=True):
    """A process the daemon started. ``startTicks`` tells it apart from a later process that
    reuses its pid: the daemon never signals a pid whose start time differs."""

    pid: int
    start_ticks: int
    kind: ProcessKind
    command: list[str]
    cwd: str
    tag: str | None = None
    env: dict[str, str] | None = None
    restart: RestartPolicy = "never"
    started_at: float
    restarts: int = 0
    log_path: str | None = None
    state: ProcessState = "running"
    exit_code: int | None = None
    #: Still the daemon's to supervise (running, or waiting out a restart backoff): a daemon
    #: that takes over restarts it if it is gone.
    managed: bool = False
    #: The sha256 of the .env it was started with (None: none, or unknown): an on-env-change
    #: process restarts only when the .env's content differs from what it saw.
    env_sha256: str | None = None
    #: It was running when the daemon stopped for real (the machine stopped, or `fleet up`
    #: ended): the next daemon on this home starts it again, whatever its restart policy. A
    #: process stopped on purpose (process.kill) never has it.
    resume: bool = False


class CronRun(msgspec.Struct, rename="camel", kw_only=True):
    started_at: float
    finished_at: float | None = None
    exit_code: int | None = None
    timed_out: bool = False


class DaemonState(msgspec.Struct, rename="camel", kw_only=True):
    schema: int = SCHEMA
    pid: int
    #: /proc start time of the daemon's pid (see TrackedProcess.start_ticks).
    start_ticks: int | None = None
    machine_id: str
    version: str
    git_sha: str | None = None
    started_at: float
    last_heartbeat: float | None = None
    control_port: int | None = None
    state: DaemonRunState
    state_reason: str
    #: How the daemon before this one ended (for humans and ``doctor``).
    previous: str | None = None
    #: The daemon this one handed over to (a handover or a takeover): the machine's
    #: supervisor watches it next.
    successor_pid: int | None = None
    processes: list[TrackedProcess] = msgspec.field(default_factory=list)
    cron: dict[str, CronRun] = msgspec.field(default_factory=dict)
    updated_at: float = 0.0


_DECODER = msgspec.json.Decoder(DaemonState)
_ENCODER = msgspec.json.Encoder()


def state_path(home: Path) -> Path:
    return home / STATE_FILE


class CorruptState(Exception):
    """The state file exists but cannot be read as a state of this daemon's schema."""


def read_state(home: Path) -> DaemonState | None:
    """The recorded state, None when there is none; CorruptState when it cannot be read. No
    side effect: what inspection commands (``status``, ``stop``, ``doctor``) use."""
    path = state_path(home)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        state = _DECODER.decode(raw)
        if state.schema != SCHEMA:
            raise msgspec.ValidationError(f"schema {state.schema}, this daemon reads {SCHEMA}")
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise CorruptState(f"{path} is corrupt: {exc}") from None
    return state


def load_state(home: Path) -> DaemonState | None:
    """For the daemon taking over its home: the recorded state; None when there is none, or it
    was corrupt (then it is moved to ``daemon.state.json.corrupt`` for a human to look at, and
    a warning is logged)."""
    try:
        return read_state(home)
    except CorruptState as exc:
        path = state_path(home)
        aside = path.with_name(path.name + ".corrupt")
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        log.warning("daemon.state_corrupt", path=str(path), moved_to=str(aside), error=str(exc))
        return None


def save_state(home: Path, state: DaemonState) -> None:
    """Atomic: a reader (or a crash) sees the old file or the new one, never half of one."""
    path = state_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    state.updated_at = time.time()
    data = _ENCODER.encode(state)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (ext4 and xfs need the directory fsynced)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
