"""``python -m tests.reaper COMMAND...``: runs COMMAND as the child subreaper of everything it
starts, and exits as COMMAND does.

Why: a process whose parent ends is handed to the nearest subreaper above it, else to PID 1, and
stays a zombie until that one reaps it. Some hosts' PID 1 (this project's CI machine's among
them) reaps late, and ``runsc delete`` polls up to a second for its sandbox's gofer, an orphan
by then, to be gone: every gVisor machine the suite stopped cost a second for that. Here the
suite's orphans are reaped as they end. The suite's own processes are unaffected: a subreaper
only ever receives orphans, never another process's children.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from base.procinfo import become_subreaper

#: Sent on to the command. SIGINT is not: a terminal's Ctrl-C reaches the command's process
#: group, the command included, and pytest takes a second SIGINT as "stop at once".
_FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128 + the signal that ended it."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def reap_until(pid: int) -> int:
    """Reaps every child as it ends until ``pid`` does; ``pid``'s wait status."""
    while True:
        ended, status = os.wait()
        if ended == pid:
            return status


def reap_left() -> None:
    """Reaps the children that have ended already, waiting for none."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m tests.reaper COMMAND [ARG...]", file=sys.stderr)
        return 2
    if not become_subreaper():
        os.execvp(argv[0], argv)  # noqa: S606 - the caller's argv, run as given
    pid = os.posix_spawnp(argv[0], argv, os.environ)
    for sig in _FORWARDED:
        signal.signal(sig, lambda signum, _frame: os.kill(pid, signum))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    status = reap_until(pid)
    reap_left()
    return exit_code(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
