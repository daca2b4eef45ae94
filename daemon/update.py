"""Daemon code on the machine: which code is installed, which one runs, and switching.

``~/.fleet/code/<sha>/`` holds one commit's code (put there by the provider, see
providers/code.py) and ``~/.fleet/code/current`` names the one to run. A daemon
switches in two ways: ``daemon.selfUpdate`` re-executes itself in place (same pid, so its
background processes stay its children), and a daemon that notices at a heartbeat that
``current`` is not what it runs hands over to a new daemon process of that code.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import structlog

from contracts.errors import NotFound
from contracts.machine_files import CODE_CURRENT, CODE_DIR, CODE_SHA_FILE
from core.version import SOURCE_ROOT, git_sha
from daemon import nodump

log = structlog.get_logger(__name__)

#: Set in a daemon started by a handover: the pid of the daemon it takes over from.
HANDOVER_VAR = "FLEET_HANDOVER_FROM"


def installed_code(home: Path, ref: str) -> tuple[Path, str]:
    """The code directory for ``ref`` (a SHA or an unambiguous prefix) and its full SHA."""
    root = home / CODE_DIR
    candidates = [p for p in root.glob(f"{ref}*") if (p / CODE_SHA_FILE).is_file()]
    if len(candidates) != 1:
        what = "is not installed" if not candidates else "is ambiguous"
        raise NotFound(f"code {ref!r} {what} under ~/{CODE_DIR} on this machine")
    path = candidates[0]
    return path, (path / CODE_SHA_FILE).read_text().strip()


def current_code(home: Path) -> tuple[Path, str] | None:
    """What ``~/.fleet/code/current`` points at, if anything complete."""
    link = home / CODE_CURRENT
    try:
        target = link.resolve(strict=True)
        return target, (target / CODE_SHA_FILE).read_text().strip()
    except OSError:
        return None


def activate(home: Path, code_dir: Path) -> None:
    """Point ``current`` at ``code_dir`` atomically (a new symlink renamed over the old)."""
    link = home / CODE_CURRENT
    tmp = link.with_name(f".current-{secrets.token_hex(4)}")
    os.symlink(code_dir.name, tmp)
    os.replace(tmp, link)


def newer_code(home: Path) -> Path | None:
    """The installed ``current`` code if it is not the code this process runs."""
    found = current_code(home)
    if found is None:
        return None
    path, sha = found
    if path == SOURCE_ROOT or sha == git_sha():
        return None
    return path


def daemon_argv() -> list[str]:
    # -P: neither the working directory nor a script's directory may shadow fleetd's packages.
    return nodump.python_argv("-P", "-m", "daemon")


def daemon_env(code_dir: Path, **extra: str) -> dict[str, str]:
    """Our environment, with the code directory first on the import path."""
    env = dict(os.environ) | {"PYTHONPATH": str(code_dir)} | extra
    return env


def exec_in_place(code_dir: Path) -> None:
    """Become a daemon running ``code_dir``: same pid, same children, same lock."""
    log.info("daemon.exec_in_place", code=str(code_dir))
    sys.stdout.flush()
    sys.stderr.flush()
    argv = daemon_argv()
    os.execve(argv[0], argv, daemon_env(code_dir))  # noqa: S606 - argv by design


def spawn_successor(code_dir: Path) -> int:
    """Start the daemon that takes over from this one; it waits for our lock."""
    env = daemon_env(code_dir, **{HANDOVER_VAR: str(os.getpid())})
    # Our stdout/stderr (the machine's daemon log) are inherited; a new session, as we have.
    argv = daemon_argv()
    pid = os.posix_spawn(
        argv[0],
        argv,
        env,
        setsid=True,
        file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)],
    )
    log.info("daemon.successor_started", pid=pid, code=str(code_dir))
    return pid
