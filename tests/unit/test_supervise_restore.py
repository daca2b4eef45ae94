"""daemon/supervise.py: a parked supervisor (a pause's SIGUSR1) wakes its daemon, as the
resume's SIGUSR2 does, the moment the restore mark its provider writes before each restore has
changed; before that, and once woken, it does nothing. On real runsc sandboxes:
tests/integration/test_gvisor_pause.py and test_gvisor_fork_memory.py."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from base.tokenfd import RESTORE_MARK_FILE
from daemon.supervise import PARKS, RESUME, WATCH, Supervisor
from daemon.supervision import nodump

#: Stands for the daemon: says which of the park signals it got, one line each.
DAEMON = r"""
import os, signal
# A mask inherited from the suite's process (a test that ran the supervisor's end blocks these).
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1, signal.SIGUSR2})
for sig in (signal.SIGUSR1, signal.SIGUSR2):
    # One write a line: a signal that comes while a line is written never splits it.
    signal.signal(sig, lambda n, _: os.write(1, f"{signal.Signals(n).name}\n".encode()))
os.write(1, b"up\n")
while True:
    signal.pause()
"""


class Daemon:
    """The stand-in daemon's process, and its lines as they come (read by a thread of their
    own: a line is waited for with a timeout, never for ever)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", DAEMON], stdout=subprocess.PIPE,
                                     text=True)  # fmt: skip
        self.pid = self.proc.pid
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def said(self) -> str:
        """Its next line, within 30 s ("" if none came)."""
        try:
            return self.lines.get(timeout=30)
        except queue.Empty:
            return ""


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    made = Daemon()
    assert made.said() == "up\n"
    yield made
    made.proc.kill()
    made.proc.wait()
    made.reader.join(timeout=30)
    assert made.proc.stdout is not None
    made.proc.stdout.close()


@pytest.fixture
def token_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A supervisor that stays root, its token file here (a gvisor machine's)."""
    (tmp_path / "token").write_text("t")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    return tmp_path


def held_in(token_dir: Path) -> nodump.HeldIdentity:
    """What a supervisor that stays root holds: its token, and the file it read it from."""
    return nodump.HeldIdentity(token="t", token_file=str(token_dir / "token"))


def test_a_changed_restore_mark_wakes_the_parked_daemon_once(
    daemon: Daemon, token_dir: Path
) -> None:
    (token_dir / RESTORE_MARK_FILE).write_text("before")
    sup = Supervisor(["true"], held_in(token_dir), home=token_dir)
    sup.current = daemon.pid
    previous = signal.signal(WATCH, signal.SIG_IGN)  # the timer's ticks are called below
    try:
        sup.signal(PARKS[0], None)  # the pause's
        assert daemon.said() == "SIGUSR1\n"
        assert signal.getitimer(signal.ITIMER_REAL)[1] > 0  # looking, while parked
        for _ in range(3):
            sup.signal(WATCH, None)  # the same mark: nothing
        (token_dir / RESTORE_MARK_FILE).write_text("after")  # restored
        sup.signal(WATCH, None)
        assert daemon.said() == "SIGUSR2\n"
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # no longer looking
        sup.signal(WATCH, None)  # a tick that was on its way: nothing
        sup.signal(RESUME, None)  # the provider's own, after: forwarded, harmless
        assert daemon.said() == "SIGUSR2\n"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(WATCH, previous)


def test_a_resume_signal_stops_the_looking(daemon: Daemon, token_dir: Path) -> None:
    sup = Supervisor(["true"], held_in(token_dir), home=token_dir)
    sup.current = daemon.pid
    previous = signal.signal(WATCH, signal.SIG_IGN)
    try:
        sup.signal(PARKS[0], None)
        assert daemon.said() == "SIGUSR1\n"
        sup.signal(RESUME, None)  # a failed checkpoint's wake, or an older provider's resume
        assert daemon.said() == "SIGUSR2\n"
        assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
        (token_dir / RESTORE_MARK_FILE).write_text("later")
        sup.signal(WATCH, None)  # not parked: nothing more is sent
        os.kill(daemon.pid, PARKS[0])  # a marker: the next line is this one, not a SIGUSR2
        assert daemon.said() == "SIGUSR1\n"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(WATCH, previous)
