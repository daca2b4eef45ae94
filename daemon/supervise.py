"""``python -m daemon.supervise``: a local machine's first process; it keeps the daemon up.

- A daemon that dies (a signal, a non-zero exit) is started again at once, with a short
  backoff when it keeps dying; the new daemon re-adopts the background processes from its
  state file.
- A daemon that hands over to a successor (newer code) exits 0 with the successor running: the
  successor becomes the one watched (it is our child once its parent is gone: we are the
  machine's child subreaper, so every orphan of the machine comes back to us to be reaped).
- A daemon that stops on request (exit 0, no successor) ends the supervisor, and with it the
  machine (in the sandbox, the pid namespace ends with its init).
- SIGTERM/SIGINT: forwarded to the daemon, then we stop when it has. SIGHUP: restart the
  daemon in place (forwarded as SIGHUP, which makes the daemon leave its processes running).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from pathlib import Path

from core import procinfo

_PR_SET_CHILD_SUBREAPER = 36
_MAX_BACKOFF_S = 2.0
_HEALTHY_AFTER_S = 30.0  # a daemon up this long has its restart backoff reset
HANDOVER_VAR = "FLEET_HANDOVER_FROM"
#: Set by the provider inside a sandbox (``providers.sandbox.SANDBOXED_VAR``: the daemon may
#: not import providers).
SANDBOXED_VAR = "FLEET_SANDBOXED"
#: In its own pid namespace the supervisor is bwrap's command: pid 2 (pid 1 is bwrap's init).
_NAMESPACE_FIRST_PIDS = 2


def _say(event: str, **kw: object) -> None:
    fields = " ".join(f"{k}={v}" for k, v in kw.items())
    print(f"supervisor: {event} {fields}".rstrip(), file=sys.stderr, flush=True)


def _become_subreaper() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def successor_of(pid: int) -> int | None:
    """A live daemon started by ``pid`` to take over from it (handover), if any."""
    marker = f"{HANDOVER_VAR}={pid}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            environ = (entry / "environ").read_bytes().split(b"\0")
            if marker in environ and procinfo.state(int(entry.name)) not in (None, "Z"):
                return int(entry.name)
    return None


class Supervisor:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.current: int | None = None
        self.stopping = False
        self.restart_requested = False
        self.started_at = 0.0
        self.failures = 0

    def spawn(self) -> None:
        self.current = os.posix_spawn(self.argv[0], self.argv, dict(os.environ))
        self.started_at = time.monotonic()
        _say("daemon_started", pid=self.current)

    def signal(self, signum: int, _: object) -> None:
        if signum == signal.SIGHUP:
            self.restart_requested = True
        else:
            self.stopping = True
        if self.current is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.current, signum)

    def on_exit(self, pid: int, status: int) -> bool:
        """The watched daemon ended; False when the supervisor should end too."""
        code = os.waitstatus_to_exitcode(status)
        if (successor := successor_of(pid)) is not None:
            _say("daemon_handed_over", old=pid, new=successor)
            self.current = successor
            return True
        if self.stopping or (code == 0 and not self.restart_requested):
            _say("daemon_stopped", pid=pid, code=code)
            return False
        if self.restart_requested:
            self.restart_requested = False
        else:
            if time.monotonic() - self.started_at > _HEALTHY_AFTER_S:
                self.failures = 0
            self.failures += 1
            delay = min(0.1 * 2 ** (self.failures - 1), _MAX_BACKOFF_S)
            _say("daemon_died", pid=pid, code=code, restart_in_s=delay)
            time.sleep(delay)
        self.spawn()
        return True

    def run(self) -> int:
        self.spawn()
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return 0
            if pid == self.current and not self.on_exit(pid, status):
                end_the_machine()
                return 0
            # Any other pid: an orphan of the machine, reaped so that no zombie stays.


def end_the_machine() -> None:
    """In the machine's own pid namespace, end every process left in it (a ``setsid`` one the
    daemon could not reach included): bwrap's init keeps the namespace up while any remains.
    Only there: outside a sandbox, kill(-1) would signal every process of the user."""
    if os.environ.get(SANDBOXED_VAR) != "1" or os.getpid() > _NAMESPACE_FIRST_PIDS:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(-1, signal.SIGKILL)  # all but pid 1 (bwrap's init) and this process
    _say("machine_ended")


def main() -> None:
    argv = sys.argv[1:] or [sys.executable, "-I", "-m", "daemon"]
    _become_subreaper()
    sup = Supervisor(argv)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, sup.signal)
    raise SystemExit(sup.run())


if __name__ == "__main__":
    main()
