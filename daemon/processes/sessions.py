"""``session.*``: interactive sessions on pseudo-terminals (see daemon/processes/pty_session.py).

A session outlives its clients, like tmux: it runs until its command exits or the platform
closes it. An exited session stays listed, with its exit code and scrollback, until it is
closed (or, when the machine is at ``MAX_SESSIONS``, until a new one needs its place).
Sessions live in the daemon's memory: a daemon restart ends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import os
import pty
import pwd
import secrets
import signal
import termios
from collections.abc import Callable
from pathlib import Path

import structlog

from contracts.daemon import rpc as d, sessions as ss
from contracts.daemon.streams import StreamOpened
from contracts.errors import NotFound, TooManyStreams
from contracts.rpc.jsonrpc import NoParams, handles
from daemon.byte_stream_hub import ByteStreamHub
from daemon.processes import tools
from daemon.processes.env import ProcessEnv
from daemon.processes.pty_session import Session, Viewer, set_size

log = structlog.get_logger(__name__)


def login_shell() -> list[str]:
    """The user's login shell, as a login shell."""
    shell = os.environ.get("SHELL") or ""
    if not shell:
        with contextlib.suppress(KeyError):
            shell = pwd.getpwuid(os.getuid()).pw_shell
    return [shell if shell and os.path.isfile(shell) else "/bin/sh", "-l"]


def _take_terminal() -> None:
    """In the child, after setsid: make stdin (the terminal) its controlling terminal, so
    Ctrl-C there reaches the foreground process group as SIGINT."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


_PR_SET_PDEATHSIG = 1


def _hangs_up_with_daemon() -> Callable[[], None]:
    """What a pipe session's child runs before its exec: SIGHUP when the daemon ends, however
    it ends (a terminal's command gets that from its terminal's hangup; a pipe's would run on
    for good, orphaned). prctl is looked up here, in the daemon: the child only calls it."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def child() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGHUP), 0, 0, 0)

    return child


Started = tuple[asyncio.subprocess.Process, dict[ss.RecordKind, int], int | None]


async def _on_terminal(argv: list[str], cwd: Path, env: dict[str, str], cols: int,
                       rows: int) -> Started:  # fmt: skip
    """``argv`` on a new pseudo-terminal: its master is the output and the input."""
    master, slave = pty.openpty()
    try:
        set_size(master, cols, rows)
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
            start_new_session=True, preexec_fn=_take_terminal,
        )  # fmt: skip
    except BaseException:  # whatever stopped the start: the PTY is not left open
        os.close(master)
        raise
    finally:
        os.close(slave)
    return proc, {ss.RecordKind.OUTPUT: master}, master


async def _on_pipes(argv: list[str], cwd: Path, env: dict[str, str], stdin: bool) -> Started:
    """``argv`` on pipes: stdout and stderr apart, stdin a pipe or empty (``/dev/null``)."""
    out, err = os.pipe(), os.pipe()
    feed = os.pipe() if stdin else (os.open(os.devnull, os.O_RDONLY), None)
    child_ends = [feed[0], out[1], err[1]]
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, stdin=feed[0], stdout=out[1], stderr=err[1],
            start_new_session=True, preexec_fn=_hangs_up_with_daemon(),
        )  # fmt: skip
    except BaseException:
        for fd in (out[0], err[0], feed[1]):
            if fd is not None:
                os.close(fd)
        raise
    finally:
        for fd in child_ends:
            os.close(fd)
    return proc, {ss.RecordKind.OUTPUT: out[0], ss.RecordKind.STDERR: err[0]}, feed[1]


class Sessions:
    def __init__(self, *, hub: ByteStreamHub, home: Path, env: ProcessEnv) -> None:
        self._hub = hub
        self._home = home
        self._env = env
        self._sessions: dict[str, Session] = {}

    def _get(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise NotFound(f"no session {session_id} on this machine")
        return session

    @handles(d.SESSION_OPEN)
    async def open(self, p: ss.SessionOpenParams, _: None) -> ss.SessionInfo:
        await self._make_room()
        argv = p.command or login_shell()
        cwd = tools.working_dir(self._home, p.cwd)
        env = self._env(p.env)
        try:
            if p.pty:
                env.setdefault("TERM", "xterm-256color")
                proc, outputs, stdin = await _on_terminal(argv, cwd, env, p.cols, p.rows)
            else:
                proc, outputs, stdin = await _on_pipes(argv, cwd, env, p.stdin)
        except OSError as exc:
            raise tools.start_failed(argv[0], exc) from None
        sid = secrets.token_hex(8)
        session = Session(session_id=sid, name=p.name or os.path.basename(argv[0]), argv=argv,
                          cwd=str(cwd), cols=p.cols, rows=p.rows, proc=proc, outputs=outputs,
                          stdin=stdin, pty=p.pty, timeout_s=p.timeout_s)  # fmt: skip
        self._sessions[sid] = session
        log.info("session.opened", session_id=sid, argv0=argv[0], pid=proc.pid, pty=p.pty)
        return session.info()

    async def _make_room(self) -> None:
        if len(self._sessions) < ss.MAX_SESSIONS:
            return
        exited = [s for s in self._sessions.values() if s.done.is_set() and not s.viewers]
        if not exited:
            raise TooManyStreams(f"this machine already runs {ss.MAX_SESSIONS} sessions")
        oldest = min(exited, key=lambda s: s.started_at)
        self._sessions.pop(oldest.id, None)

    @handles(d.SESSION_LIST)
    async def list(self, _: NoParams, __: None) -> ss.SessionList:
        return ss.SessionList(sessions=[ss.listed(s.info()) for s in self._sessions.values()])

    @handles(d.SESSION_RESIZE)
    async def resize(self, p: ss.SessionResizeParams, _: None) -> ss.SessionInfo:
        session = self._get(p.session_id)
        session.resize(p.cols, p.rows)
        return session.info()

    @handles(d.SESSION_SIGNAL)
    async def signal(self, p: ss.SessionSignalParams, _: None) -> ss.SessionSignaled:
        return ss.SessionSignaled(signaled=self._get(p.session_id).signal(p.signal))

    @handles(d.SESSION_WRITE)
    async def write(self, p: ss.SessionWriteParams, _: None) -> ss.SessionWritten:
        session = self._get(p.session_id)
        written = await session.write(p.data, wait_s=ss.WRITE_WAIT_S)
        if p.eof:
            session.close_stdin()
        return ss.SessionWritten(written=written)

    @handles(d.SESSION_CLOSE)
    async def close(self, p: ss.SessionRef, _: None) -> ss.SessionClosed:
        session = self._sessions.pop(p.session_id, None)
        if session is None:
            return ss.SessionClosed(closed=False)
        await session.close()
        log.info("session.closed", session_id=p.session_id, exit_code=session.exit_code)
        return ss.SessionClosed(closed=True)

    @handles(d.SESSION_ATTACH)
    async def attach(self, p: ss.SessionAttachParams, _: None) -> StreamOpened:
        session = self._get(p.session_id)
        stream = self._hub.open(window=p.window, chunk_size=p.chunk_size)
        await stream.start()
        viewer = Viewer(session, stream, p.chunk_size, records=p.input_records)
        self._hub.spawn(viewer.run(), name=f"viewer-{session.id}")
        return StreamOpened(stream_id=stream.stream_id)

    async def close_all(self) -> None:
        """The daemon is stopping: end every session."""
        sessions, self._sessions = list(self._sessions.values()), {}
        for s in sessions:
            s.lost = True
        await asyncio.gather(*(s.close(grace_s=0.5) for s in sessions))
