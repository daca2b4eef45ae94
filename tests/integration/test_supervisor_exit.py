"""A supervisor whose daemon has stopped exits 0 even when a SIGTERM reaches it while it exits:
an archive asks the daemon to stop, then the provider's stop sends the supervisor SIGTERM, which
under load can arrive while the interpreter is finalizing (when Python would have put SIGTERM's
default action back, and the machine would end by signal: exit 143 from bwrap). A real
supervisor process, flooded with SIGTERM from the moment its handlers are in place. And one that
reaches it before its first daemon exists is carried out on that daemon."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from base.codestore import CURRENT_FILE, STORE_VAR


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


def test_a_sigterm_before_the_first_daemon_is_spawned_stops_it_at_once(tmp_path: Path) -> None:
    """A stop that reaches the supervisor after its handlers are in place but before its first
    daemon exists (the provider's stop of a machine that has just started: a ``fleet down``, a
    stack's end) is carried out on the daemon once it is spawned. Before, the daemon ran on and
    the provider waited out its whole grace time (20 s) to SIGKILL the machine. The window is
    held open by the code store's record, a FIFO the supervisor reads before it spawns."""
    store = tmp_path / "code"
    store.mkdir()
    os.mkfifo(store / CURRENT_FILE)
    daemon = [sys.executable, "-c", "import time; time.sleep(600)"]
    env = {**os.environ, "FLEET_HOME": str(tmp_path), STORE_VAR: str(store)}
    sup = subprocess.Popen([sys.executable, "-m", "daemon.supervise", *daemon], env=env,
                           start_new_session=True)  # fmt: skip
    try:
        _await_handlers(sup.pid)
        os.kill(sup.pid, signal.SIGTERM)  # no daemon yet: it is reading the record
        fd = os.open(store / CURRENT_FILE, os.O_WRONLY)  # until it reads: it has the SIGTERM
        os.write(fd, b"{}\n")  # no record: the daemon runs the supervisor's own code
        os.close(fd)
        assert sup.wait(timeout=30) == 0  # before: still waiting on a daemon told nothing
    finally:  # the daemon too, were it left running (its group is the supervisor's)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sup.pid, signal.SIGKILL)
        sup.wait()


#: A daemon that takes a while to start (a real one imports for seconds on gVisor's ptrace), then
#: handles the resume's signal and lets it in, as daemon/__main__.py does, says whether one came,
#: and stops.
SLOW_DAEMON = """
import signal, sys, time
time.sleep(1.0)
signal.signal(signal.SIGUSR2, lambda *_: print("daemon: resumed", file=sys.stderr, flush=True))
signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGUSR1, signal.SIGUSR2))
time.sleep(0.5)
"""


def test_a_resume_that_reaches_a_daemon_still_starting_waits_for_it(tmp_path: Path) -> None:
    """A resume's SIGUSR2 forwarded to a daemon that has not installed its handler yet (one the
    supervisor has just started again, after the restore of a fork whose daemon died) waits
    until the daemon lets it in: before, it ended the daemon (``daemon_died code=-12``), and the
    kernels and processes it held went with it (found by the soak)."""
    env = {**os.environ, "FLEET_HOME": str(tmp_path)}
    sup = subprocess.Popen([sys.executable, "-m", "daemon.supervise", sys.executable, "-c",
                            SLOW_DAEMON], env=env, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)  # fmt: skip
    assert sup.stderr is not None
    try:
        said = [sup.stderr.readline()]  # once it says so, it forwards signals to the daemon
        assert "daemon_started" in said[0], said
        os.kill(sup.pid, signal.SIGUSR2)  # the daemon is asleep, no handler yet
        said += sup.stderr.readlines()  # until it ends
        sup.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(sup.pid, signal.SIGKILL)
        sup.wait()
        sup.stderr.close()
    err = "".join(said)
    assert "daemon_died" not in err, err
    assert "daemon: resumed" in err, err  # let in once the daemon could take it
    assert sup.returncode == 0, err
