"""``python -m daemon.supervise``: a local machine's first process; it keeps the daemon up.

- A daemon that dies (a signal, a non-zero exit) is started again at once, with a short
  backoff when it keeps dying; the new daemon re-adopts the background processes from its
  state file.
- Each daemon runs the code the platform recorded as current in the machine's code store
  (read-only to the machine, checked against its digest: base/codestore.py), else the code
  this supervisor was started with; it gets the token on a pipe (daemon/supervision/nodump.py).
- A daemon that hands over to a successor exits 0 with the successor running: the successor
  becomes the one watched. One that took over (a newer daemon started by anyone on the
  machine, daemon/supervision/takeover.py) is named in the state file (``successorPid``, or the
  ``pid``
  that has since replaced it). It is our child once its parent is gone (we are the machine's
  child subreaper, so every orphan of the machine comes back to us to be reaped); until then
  we poll it.
- A daemon that stops on request (exit 0, no successor) ends the supervisor, and with it the
  machine (in the sandbox, the pid namespace ends with its init).
- SIGTERM/SIGINT: forwarded to the daemon, then we stop when it has. SIGHUP: restart the
  daemon in place (forwarded as SIGHUP, which makes the daemon leave its processes running).
  SIGUSR1/SIGUSR2: forwarded, for a pause and its resume (daemon/supervision/park.py), held until
  the
  daemon has its handlers (it starts with them blocked, and lets them in). At a resume, an
  identity its provider wrote since (a fork's own, a renewed credential) is told to the
  daemon first, on its identity pipe: the daemon takes it in place (daemon/server.py).
- A restore announces itself: from a pause's signal on, the supervisor reads every
  ``RESTORE_WATCH_S`` the restore mark beside its token file, which its provider writes anew
  before each restore (``HeldIdentity.restore_mark``). Once it has changed the machine was
  restored (a resume, or a fork of it), and the supervisor does at once what the resume's
  signal does: the daemon reconnects while its provider is still finishing the restore. The
  provider's SIGUSR2 comes after, and changes nothing then.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from base import procinfo
from base.backoff import backoff_s
from base.codestore import STORE_VAR, CodeUnverified, current_code, with_code
from base.tokenfd import DAEMON_RUN_AS_VAR, SUDO_SOCKET_VAR
from daemon.supervision import nodump
from daemon.supervision.pool import pool_channel, relay_claim
from daemon.supervision.state import MACHINE_BOOT_VAR, CorruptState, DaemonState, read_state

_MAX_BACKOFF_S = 2.0
_HEALTHY_AFTER_S = 30.0  # a daemon up this long has its restart backoff reset
_POLL_S = 0.2  # how often a watched daemon that is not our child is looked at
#: Set by the provider inside a sandbox (``providers.sandbox.bwrap.SANDBOXED_VAR``: the daemon may
#: not import providers).
SANDBOXED_VAR = "FLEET_SANDBOXED"
#: In its own pid namespace the supervisor is bwrap's command: pid 2 (pid 1 is bwrap's init).
_NAMESPACE_FIRST_PIDS = 2


def _say(event: str, **kw: object) -> None:
    fields = " ".join(f"{k}={v}" for k, v in kw.items())
    print(f"supervisor: {event} {fields}".rstrip(), file=sys.stderr, flush=True)


def _home() -> Path:
    return Path(os.environ.get("FLEET_HOME") or os.environ.get("HOME") or Path.home())


def _read_state(home: Path) -> DaemonState | None:
    """The daemon's state file, read as the machine's user where the supervisor is root (a
    gvisor machine's, ``DAEMON_RUN_AS_VAR``): root never reads a path the machine controls."""
    run_as = os.environ.get(DAEMON_RUN_AS_VAR)
    if not run_as or os.geteuid() != 0:
        return read_state(home)
    uid, _, gid = run_as.partition(":")
    os.setegid(int(gid or uid))
    os.seteuid(int(uid))
    try:
        return read_state(home)
    finally:
        os.seteuid(0)
        os.setegid(0)


def taker_of(pid: int, home: Path) -> int | None:
    """A live daemon the state file names as having replaced ``pid`` (a takeover): the daemon
    ``pid`` recorded as its successor, or the one that has since written the file."""
    try:
        state = _read_state(home)
    except CorruptState:
        return None
    if state is None:
        return None
    if state.pid != pid and procinfo.is_alive(state.pid, state.start_ticks):
        return state.pid
    if state.pid == pid and state.successor_pid and procinfo.is_alive(state.successor_pid, None):
        return state.successor_pid
    return None


def stopped_for_good(pid: int, home: Path) -> bool:
    """A daemon we could not reap (not our child) recorded a clean stop before it ended."""
    with contextlib.suppress(CorruptState):
        state = _read_state(home)
        return state is not None and state.pid == pid and state.state == "stopped"
    return False


class Supervisor:
    """``held``: the machine's identity this process holds (its token, handed to each daemon
    it starts)."""

    def __init__(self, argv: list[str], held: nodump.HeldIdentity,
                 home: Path | None = None) -> None:  # fmt: skip
        self.argv = argv
        self.held = held
        self.home = home or _home()
        self.current: int | None = None
        self.stopping = False
        self.restart_requested = False
        self.started_at = 0.0
        self.failures = 0
        self.spawned = 0
        #: The write end of the watched daemon's identity pipe (``HeldIdentity.tell_new_identity``).
        self.identity: int | None = None
        #: While parked (a pause's signal, no resume's yet): the restore mark at the park.
        self.parked_mark: str | None = None

    def spawn(self) -> None:
        env = dict(os.environ)
        if self.spawned == 0:  # the machine's first daemon: the machine has just started
            env[MACHINE_BOOT_VAR] = "1"
        elif machine_id := self.held.reread_identity():  # a fork restored is told who it is
            os.environ["FLEET_MACHINE_ID"] = env["FLEET_MACHINE_ID"] = machine_id
        self.spawned += 1
        env, argv = self.code(env)
        env, give_token = self.held.token_handed(env)
        read, write = nodump.identity_pipe()
        env[nodump.IDENTITY_FD_VAR] = str(nodump.IDENTITY_FD)
        give = [*give_token, (os.POSIX_SPAWN_DUP2, read, nodump.IDENTITY_FD)]
        try:
            # A stop reaches the daemon at once (one started after a stop was asked must still
            # take it); a pause's or a resume's waits until the daemon lets it in, with its
            # handler in place (daemon/__main__.py): it would end a daemon still starting.
            self.current = os.posix_spawn(argv[0], argv, env, file_actions=give,
                                          setsigmask=PARKS)  # fmt: skip
        except BaseException:
            os.close(write)
            raise
        finally:
            nodump.close_handed(give)
        if self.identity is not None:  # the daemon before's
            os.close(self.identity)
        self.identity = write
        self.started_at = time.monotonic()
        _say("daemon_started", pid=self.current)
        if self.stopping:  # a stop that came while there was no daemon to forward it to
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.current, signal.SIGTERM)

    def code(self, env: dict[str, str]) -> tuple[dict[str, str], list[str]]:
        """The environment and argv of a daemon of the platform's current code, if the store
        has one that checks out; else of the code we were started with."""
        store = env.get(STORE_VAR)
        try:
            found = current_code(Path(store)) if store else None
        except CodeUnverified as exc:
            _say("code_refused", reason=repr(str(exc)))
            found = None
        if found is None:
            return env, self.argv
        path, sha = found
        _say("daemon_code", sha=sha[:12])
        # Not -I: the import path starts with the store's code (nothing of the home's).
        return with_code(path, env), nodump.python_argv(*nodump.DAEMON_FLAGS, "-m", "daemon")

    def signal(self, signum: int, _: object) -> None:
        if signum == WATCH:
            # Taken while looked at: a tick that comes meanwhile finds nothing to do.
            mark, self.parked_mark = self.parked_mark, None
            if mark is None:
                return
            if self.held.restore_mark() == mark:
                self.parked_mark = mark  # not yet
                return
            _say("restored")
            self.signal(RESUME, None)
            return
        if signum in PARKS:  # a pause's or a resume's, for the daemon alone
            self.watch_restore(signum != RESUME)
            if signum == RESUME:  # told first: the daemon reads it on the signal
                self.held.tell_new_identity(self.identity)
            if self.current is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.current, signum)
            return
        if signum == signal.SIGHUP:
            self.restart_requested = True
        else:
            # One stop is forwarded once; more are held back by the kernel: a burst of them
            # would otherwise nest this handler until RecursionError killed the supervisor
            # (the machine ending by signal instead of its daemon's clean stop).
            signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)
            if self.stopping:
                return
            self.stopping = True
        if self.current is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.current, signum)

    def watch_restore(self, parked: bool) -> None:
        """While parked, the restore mark read every ``RESTORE_WATCH_S`` (SIGALRM); else not."""
        self.parked_mark = self.held.restore_mark() if parked else None
        every = RESTORE_WATCH_S if parked else 0.0
        signal.setitimer(signal.ITIMER_REAL, every, every)

    def on_exit(self, pid: int, code: int) -> bool:
        """The watched daemon ended; False when the supervisor should end too."""
        successor = taker_of(pid, self.home)
        if successor is not None:
            _say("daemon_handed_over", old=pid, new=successor)
            self.current = successor
            if self.stopping:  # the stop went to the daemon that handed over: it is this one's
                with contextlib.suppress(ProcessLookupError):
                    os.kill(successor, signal.SIGTERM)
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
            delay = backoff_s(self.failures, base=0.1, cap=_MAX_BACKOFF_S, jitter=False)
            _say("daemon_died", pid=pid, code=code, restart_in_s=delay)
            time.sleep(delay)
        self.spawn()
        return True

    def run(self) -> int:
        provider = pool_channel(os.environ)
        if provider is None:
            self.spawn()
        elif not relay_claim(provider, self.spawn, self.held):  # a pooled machine never claimed
            self.stopping = True
            if self.current is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.current, signal.SIGKILL)
            end_the_machine()
            return 0
        else:  # claimed: its home may be the one the machine had (the identity said so)
            self.home = _home()
        while (ended := self.next_exit()) is not None:
            pid, code = ended
            if pid == self.current and not self.on_exit(pid, code):
                end_the_machine()
                return 0
            # Any other pid: an orphan of the machine, reaped so that no zombie stays.
        return 0

    def next_exit(self) -> tuple[int, int] | None:
        """The next process that ended and its exit code; None when nothing is left to watch.
        A watched daemon that is not our child (a taker whose parent lives on) is polled."""
        while True:
            ours = self.current is None or procinfo.parent(self.current) == os.getpid()
            try:
                pid, status = os.waitpid(-1, 0 if ours else os.WNOHANG)
            except ChildProcessError:
                if ours:
                    return None
                pid, status = 0, 0
            if pid:
                return pid, os.waitstatus_to_exitcode(status)
            assert self.current is not None
            if not procinfo.is_alive(self.current, None):
                return self.current, 0 if stopped_for_good(self.current, self.home) else 1
            time.sleep(_POLL_S)


def end_the_machine() -> None:
    """In the machine's own pid namespace, end every process left in it (a ``setsid`` one the
    daemon could not reach included): bwrap's init keeps the namespace up while any remains.
    Only there: outside a sandbox, kill(-1) would signal every process of the user."""
    if os.environ.get(SANDBOXED_VAR) != "1" or os.getpid() > _NAMESPACE_FIRST_PIDS:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(-1, signal.SIGKILL)  # all but pid 1 (bwrap's init) and this process
    _say("machine_ended")


def start_sudo_broker() -> None:
    """A gvisor machine's supervisor, root of gVisor's kernel: ``sudo``'s broker, before any
    daemon or thread exists (daemon/supervision/sudo.py). Elsewhere (no variable, or not root):
    none."""
    path = os.environ.pop(SUDO_SOCKET_VAR, None)
    if path and os.geteuid() == 0 and os.environ.get(SANDBOXED_VAR) == "1":
        from daemon.supervision import (
            sudo,  # imported where it runs: the supervisor's start stays lean
        )

        try:
            _say("sudo_broker", pid=sudo.start_broker(path))
        except OSError as exc:  # the machine runs on without root for its user
            _say("sudo_broker_failed", reason=repr(str(exc)))


def main() -> None:
    nodump.forbid_dumps()
    held = nodump.HeldIdentity()
    held.take_token()  # before any of the machine's processes exists
    try:
        held.take_token_file_and_drop_root()
    except nodump.TokenSpent as exc:  # no daemon without a token: the provider starts it again
        _say("token_spent", reason=repr(str(exc)))
        raise SystemExit(TOKEN_SPENT_EXIT) from None
    argv = sys.argv[1:] or nodump.python_argv("-I", "-m", "daemon")
    procinfo.become_subreaper()
    start_sudo_broker()
    sup = Supervisor(argv, held)
    for sig in _HANDLED:
        signal.signal(sig, sup.signal)
    code = sup.run()
    # The machine is ending: a signal from now on (the provider's stop after an archive asked
    # the daemon to stop, arriving while this exits) changes nothing. Ignored, not handled:
    # the interpreter's finalization puts back the default action (death) of a handled signal,
    # never of an ignored one, and the machine would end by SIGTERM (exit 143 from bwrap).
    signal.pthread_sigmask(signal.SIG_BLOCK, _HANDLED)
    for sig in _HANDLED:
        signal.signal(sig, signal.SIG_IGN)
    raise SystemExit(code)


#: The supervisor's exit when its token file was spent (sysexits' EX_CONFIG).
TOKEN_SPENT_EXIT = 78
_STOPS = (signal.SIGTERM, signal.SIGINT)
#: A pause's and a resume's signals (daemon/supervision/park.py).
PARKS = (signal.SIGUSR1, signal.SIGUSR2)
RESUME = signal.SIGUSR2
#: While parked: the timer's signal, and how often it comes.
WATCH = signal.SIGALRM
RESTORE_WATCH_S = 0.02
_HANDLED = (*_STOPS, signal.SIGHUP, *PARKS, WATCH)


if __name__ == "__main__":
    main()
