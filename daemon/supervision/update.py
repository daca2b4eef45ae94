"""Daemon code on the machine: which code the platform installed, and switching to it.

The platform installs each commit's code in the machine's code store (base/codestore.py),
which the machine sees read-only at ``FLEET_CODE_STORE``, and records there which commit is
current. ``daemon.selfUpdate`` (a signed request of the platform) re-executes the daemon in
place (same pid, so its background processes stay its children) into that code, once checked
against the platform's record; the supervisor starts every later daemon of the machine from it
too (daemon/supervise.py). Nothing the machine writes (its home, ``~/.fleet``) decides which
code runs, and the token goes to the new code on a pipe (daemon/supervision/nodump.py), never in its
environment.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import structlog

from base.codestore import STORE_VAR, CodeUnverified, current_code, with_code
from contracts.errors import NotFound
from daemon.supervision import nodump
from daemon.supervision.nodump import DAEMON_FLAGS

log = structlog.get_logger(__name__)


def code_store(environ: dict[str, str] | os._Environ[str] = os.environ) -> Path | None:
    """The machine's code store, as its provider named it; None: no code installed here."""
    named = environ.get(STORE_VAR)
    return Path(named) if named else None


def installed_code(ref: str) -> tuple[Path, str]:
    """The code directory for ``ref`` (a SHA or a prefix of one) and its full SHA: only the
    code the platform installed and recorded as current, its tree checked."""
    store = code_store()
    try:
        found = current_code(store, ref) if store is not None else None
    except CodeUnverified as exc:
        raise NotFound(str(exc)) from None
    if found is None:
        raise NotFound(f"code {ref!r} is not installed on this machine")
    return found


def daemon_argv() -> list[str]:
    return nodump.python_argv(*DAEMON_FLAGS, "-m", "daemon")


def exec_in_place(code_dir: Path, held: nodump.HeldIdentity, import_path: str | None) -> None:
    """Become a daemon running ``code_dir``: same pid, same children, same lock; the token
    (``held``) on an inherited pipe; ``import_path``, the one this process was started with
    (``PYTHONPATH``, taken out of its environment), with ``code_dir`` in place of its code."""
    log.info("daemon.exec_in_place", code=str(code_dir))
    sys.stdout.flush()
    sys.stderr.flush()
    argv = daemon_argv()
    env = held.token_for_exec(with_code(code_dir, dict(os.environ), started_with=import_path))
    os.execve(argv[0], argv, env)  # noqa: S606 - argv by design
