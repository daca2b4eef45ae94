"""A supervisor whose daemon has stopped exits 0 even when a SIGTERM reaches it while it exits:
an archive asks the daemon to stop, then the provider's stop sends the supervisor SIGTERM, which
under load can arrive while the interpreter is finalizing (when Python would have put SIGTERM's
default action back, and the machine would end by signal: exit 143 from bwrap). A real
supervisor process, flooded with SIGTERM from the moment its handlers are in place."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _catches(pid: int, signum: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught, 16) >> (signum - 1) & 1)


def _await_handlers(pid: int) -> None:
    deadline = time.monotonic() + 30
    while not _catches(pid, signal.SIGTERM):  # its start: signals are not handled yet
        assert time.monotonic() < deadline, "the supervisor never installed its handlers"


def test_a_sigterm_while_the_supervisor_exits_does_not_kill_it(tmp_path: Path) -> None:
    daemon = [sys.executable, "-c", "import time; time.sleep(0.2)"]
    env = {**os.environ, "FLEET_HOME": str(tmp_path)}
    for _ in range(3):  # the window is short: a few runs, each must exit 0
        sup = subprocess.Popen([sys.executable, "-m", "daemon.supervise", *daemon], env=env)
        _await_handlers(sup.pid)
        sent = 0
        while sup.poll() is None:
            try:
                os.kill(sup.pid, signal.SIGTERM)
            except ProcessLookupError:
                break
            sent += 1
        assert sup.wait() == 0, f"supervisor ended by signal after {sent} SIGTERMs"
