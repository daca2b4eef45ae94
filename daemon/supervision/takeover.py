"""A starting daemon that finds another one holding the machine's lock: take over from it when
this one is newer, else refuse (exit 3, naming the holder) as before.

"Newer" is decided by, in order:

1. the package version (PEP 440 order): what a release bumps, and the only thing two daemons
   of different installs can always compare. A higher version takes over, a lower one refuses.
2. with equal versions, git ancestry: the holder's commit is an ancestor of ours, asked of the
   git checkout this daemon's code comes from. Only where that exists (a daemon run from a
   checkout); code installed by ``git archive`` (the code store, base/codestore.py) has no history.

Anything else (the same commit, diverged commits, a commit or a history we cannot see, a
version we cannot parse) refuses: a daemon never displaces another on a guess.

Taking over: ask the holder on its control port (``POST /handover?pid=<ours>``, with the local
secret) to hand over; it stops serving, leaves its background processes running, records us
as its successor and lets go of the lock, which we wait for; then we re-adopt its processes
from the state file, as after any handover.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
from pathlib import Path

import structlog

from base.lockfile import AlreadyRunning, holder_pid, lock_path
from base.version import SOURCE_ROOT
from daemon.supervision.control import ControlUnavailable, control_request
from daemon.supervision.state import CorruptState, read_state

log = structlog.get_logger(__name__)

Build = tuple[str, str | None]  # (package version, git SHA)
#: Only full object names reach git (never a ref or an option).
_FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def newer(mine: Build, theirs: Build, repo: Path = SOURCE_ROOT) -> tuple[bool, str]:
    """Is ``mine`` newer than ``theirs``, and why (said in the log or the refusal)."""
    # Here, not at the top: only a handover compares versions (idle RSS, bench 5).
    from packaging.version import InvalidVersion, Version

    try:
        my_version, their_version = Version(mine[0]), Version(theirs[0])
    except InvalidVersion as exc:
        return False, f"cannot compare versions: {exc}"
    if my_version != their_version:
        word = "newer" if my_version > their_version else "older"
        return my_version > their_version, f"package version {mine[0]} is {word} than {theirs[0]}"
    my_sha, their_sha = mine[1], theirs[1]
    if not my_sha or not their_sha or my_sha == their_sha:
        return False, f"the same version {mine[0]} and no newer commit"
    if _is_ancestor(repo, their_sha, my_sha):
        return True, f"commit {my_sha[:12]} descends from {their_sha[:12]}"
    return False, (
        f"the same version {mine[0]}, and commit {my_sha[:12]} is not known to descend from "
        f"{their_sha[:12]} (older, diverged, or no git history here to tell)"
    )


def _is_ancestor(repo: Path, older: str, newer_sha: str) -> bool:
    if not (repo / ".git").exists() or not all(map(_FULL_SHA.fullmatch, (older, newer_sha))):
        return False
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "merge-base", "--is-ancestor", older, newer_sha],
            capture_output=True, timeout=5, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0


def ask_holder(home: Path, mine: Build) -> int | None:
    """The pid of a running daemon that agreed to hand over to us, None when none runs (the
    lock is free or stale); AlreadyRunning when one runs that we do not take over from."""
    pid = holder_pid(home)
    if pid is None:
        return None
    found = _holder_status(home, pid)
    if found is None:  # cannot ask: refuse, the lock names the holder
        return None
    holder, port = found
    sha = holder.get("gitSha")
    theirs: Build = (str(holder.get("version", "")), sha if isinstance(sha, str) else None)
    ok, why = newer(mine, theirs)
    if not ok:
        raise AlreadyRunning(lock_path(home), pid, hint=(
            f"it runs {_build(theirs)} and this daemon ({_build(mine)}) is not newer: {why}; "
            "stop it first (fleet-daemon stop) to replace it"
        ))  # fmt: skip
    try:
        control_request(home, port, "POST", f"/handover?pid={os.getpid()}")
    except ControlUnavailable as exc:
        log.warning("daemon.takeover_refused", holder=pid, error=str(exc))
        return None
    log.info("daemon.taking_over", holder=pid, holder_build=_build(theirs), why=why)
    return pid


def _holder_status(home: Path, pid: int) -> tuple[dict[str, object], int] | None:
    """What the running daemon says about itself on its control port (its version and SHA)."""
    with contextlib.suppress(CorruptState):
        state = read_state(home)
        if state is not None and state.pid == pid and state.control_port:
            try:
                status = control_request(home, state.control_port, "GET", "/status")
            except ControlUnavailable as exc:
                log.warning("daemon.takeover_no_control", holder=pid, error=str(exc))
                return None
            if isinstance(status, dict) and status.get("pid") == pid:
                return status, state.control_port
    return None


def _build(build: Build) -> str:
    return f"{build[0]}@{(build[1] or 'unknown')[:12]}"
