"""envd's ``process.Process`` in fleetd's sessions: a command (``Start``) is a session on the
sandbox's machine, on pipes (stdout and stderr apart, stdin open or not) or, with ``pty``, on a
terminal; its pid is the session's process id. Its events are the session's output read through
an attach stream (``session.attach``, through the gateway's one stream opener: a stream slot of
the caller's, audited); ``List`` is ``sessions.list``'s running ones, ``SendInput`` and
``CloseStdin`` ``sessions.write``, ``SendSignal`` ``sessions.signal``, ``Update``
``sessions.resize``. ``sessions.open`` spends the caller's exec budget as ``machines.exec`` does.

As envd, a command outlives the call that started it: the call's deadline (``Connect-Timeout-
Ms``) is the command's timeout, and a client that goes away leaves it running; a command that
ended is closed once its end was told.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

import structlog
from aiohttp import web

from base.byte_stream import ByteStream
from base.tasks import cancel_and_join
from contracts.daemon import rpc as d, sessions as ss
from contracts.daemon.streams import MAX_CHUNK
from contracts.e2b import envd
from contracts.errors import FleetError, InvalidParams, NotFound, StreamAborted
from contracts.gateway import sessions as gs
from contracts.gateway.audit import Action
from services.gateway.auth import Caller
from services.gateway.e2b.calls import Calls
from services.gateway.e2b.connect import Dropped, deadline_s
from services.gateway.e2b.envd_files import to_machine
from services.gateway.streams import ByteStreamOpener

log = structlog.get_logger(__name__)
#: The header a client asks for keepalive events with (seconds between them).
KEEPALIVE_HEADER: Final = "Keepalive-Ping-Interval"
_SIGNALS: Final = {"SIGNAL_SIGKILL": 9, "SIGNAL_SIGTERM": 15}
#: How a command runs as root: fleetd's machines give their user password-less sudo.
_AS_ROOT: Final = ("sudo", "-n", "-E", "--")
_KEEPALIVE = envd.ProcessEventMessage(event=envd.ProcessEvent(keepalive=envd.Empty()))


@dataclass(frozen=True)
class Asked:
    """What a stream's request says besides its message: its deadline, how often it wants a
    keepalive, and the user it names (``Authorization: Basic <user>:``)."""

    deadline_s: float | None = None
    keepalive_s: float | None = None
    user: str | None = None

    @classmethod
    def of(cls, request: web.Request) -> Asked:
        raw = request.headers.get(KEEPALIVE_HEADER, "")
        keepalive = float(raw) if raw.isdigit() and int(raw) > 0 else None
        return cls(deadline_s(request), keepalive, _user_of(request.headers.get("Authorization")))


def _user_of(header: str | None) -> str | None:
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user = base64.b64decode(value, validate=True).decode().partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user or None


def _event(**fields: object) -> envd.ProcessEventMessage:
    return envd.ProcessEventMessage(event=envd.ProcessEvent(**fields))  # type: ignore[arg-type]


#: The exit codes (128 + n) read as the signal n that ended the command, by envd's name of it.
#: A session's end gives one number: a command that exits with one of these itself is told as
#: killed, any other code as its exit status.
_BY_SIGNAL: Final = {129: "hangup", 130: "interrupt", 137: "killed", 143: "terminated"}


def end_event(code: int | None) -> envd.ProcessEventMessage:
    """envd's end of a command: a signal's as Go's os.ProcessState says it."""
    if code is None:
        end = envd.EndEvent(exit_code=-1, status="the session was lost", error="lost")
    elif code in _BY_SIGNAL:
        end = envd.EndEvent(exit_code=-1, exited=False, status=f"signal: {_BY_SIGNAL[code]}")
    else:
        end = envd.EndEvent(exit_code=code, exited=True, status=f"exit status {code}")
    return _event(end=end)


def session_params(sandbox_id: str, m: envd.StartRequest, asked: Asked) -> gs.SessionsOpenParams:
    """``sessions.open``'s params for envd's ``Start``."""
    if not m.process.cmd:
        raise InvalidParams("a process needs its cmd", field="process.cmd")
    argv = [m.process.cmd, *m.process.args]
    if asked.user == "root":
        argv = [*_AS_ROOT, *argv]
    size = m.pty.size if m.pty is not None else envd.PtySize()
    try:
        return gs.SessionsOpenParams(
            machine_id=sandbox_id, command=argv, env=m.process.envs or None,
            cwd=to_machine(m.process.cwd) if m.process.cwd else None, pty=m.pty is not None,
            stdin=m.stdin is not False, timeout_s=asked.deadline_s, cols=size.cols or 80,
            rows=size.rows or 24, name=m.tag,
        )  # fmt: skip
    except (ValueError, TypeError) as exc:
        raise InvalidParams(f"invalid process: {exc}") from None


class Processes:
    def __init__(self, calls: Calls, opener: ByteStreamOpener) -> None:
        self._calls = calls
        self._opener = opener

    async def start(self, sandbox_id: str, m: envd.StartRequest, caller: Caller,
                    asked: Asked) -> AsyncIterator[envd.ProcessEventMessage]:  # fmt: skip
        info = await self._calls(gs.SESSIONS_OPEN, session_params(sandbox_id, m, asked), caller)
        ended = False
        async for event in self._follow(sandbox_id, info, caller, asked):
            ended = event.event.end is not None
            yield event
        if ended:  # told: nothing more will ask for it (a client gone leaves it running)
            try:
                await self._calls(gs.SESSIONS_CLOSE, gs.MachineSessionRef(
                    machine_id=sandbox_id, session_id=info.session_id), caller)  # fmt: skip
            except FleetError as exc:  # its machine going away takes the session with it
                log.info("e2b.session_left", machine_id=sandbox_id, error=str(exc))

    async def connect(self, sandbox_id: str, m: envd.SelectRequest, caller: Caller,
                      asked: Asked) -> AsyncIterator[envd.ProcessEventMessage]:  # fmt: skip
        info = await self._find(sandbox_id, m.process, caller)
        async for event in self._follow(sandbox_id, info, caller, asked):
            yield event

    async def _follow(self, machine_id: str, info: ss.SessionInfo, caller: Caller,
                      asked: Asked) -> AsyncIterator[envd.ProcessEventMessage]:  # fmt: skip
        """The session's start, its output as it comes (with keepalives between when asked
        for), and its end."""
        params = ss.SessionAttachParams(session_id=info.session_id, input_records=True)
        _, stream = await self._opener.open(caller, machine_id, d.SESSION_ATTACH, params,
                                            window=params.window, chunk_size=params.chunk_size,
                                            audit=Action.TERMINAL_ATTACH)  # fmt: skip
        try:
            yield _event(start=envd.StartEvent(pid=info.pid))
            async for event in _events(stream, pty=info.pty, keepalive_s=asked.keepalive_s):
                yield event
            yield end_event(stream.end_code)
        except StreamAborted as exc:  # its machine went away under it (killed, stopping)
            raise Dropped(exc.message) from None
        finally:
            await stream.aclose()

    async def _find(self, machine_id: str, selector: envd.ProcessSelector,
                    caller: Caller) -> ss.SessionInfo:  # fmt: skip
        """The running session ``selector`` names (by pid or by tag, its name)."""
        listed = await self._calls(gs.SESSIONS_LIST, gs.MachineSessions(machine_id=machine_id),
                                   caller)  # fmt: skip
        for s in listed.sessions:
            if s.running and (s.pid == selector.pid or (selector.tag and s.name == selector.tag)):
                return s
        name = f"pid {selector.pid}" if selector.pid is not None else f"tag {selector.tag}"
        raise NotFound(f"process with {name} not found")

    async def list(self, sandbox_id: str, _: envd.Empty, caller: Caller) -> envd.ListAnswer:
        listed = await self._calls(gs.SESSIONS_LIST, gs.MachineSessions(machine_id=sandbox_id),
                                   caller)  # fmt: skip
        return envd.ListAnswer(processes=[
            envd.ProcessInfo(pid=s.pid, tag=s.name,
                             config=envd.ProcessConfig(cmd=s.command[0], args=s.command[1:],
                                                       cwd=s.cwd))
            for s in listed.sessions if s.running
        ])  # fmt: skip

    async def send_input(self, sandbox_id: str, m: envd.SendInputRequest,
                         caller: Caller) -> envd.Empty:  # fmt: skip
        info = await self._find(sandbox_id, m.process, caller)
        await self._write(sandbox_id, info, m.input.stdin or m.input.pty or b"", caller)
        return envd.Empty()

    async def _write(self, machine_id: str, info: ss.SessionInfo, data: bytes, caller: Caller,
                     eof: bool = False) -> None:  # fmt: skip
        for at in range(0, max(len(data), 1), MAX_CHUNK):
            last = at + MAX_CHUNK >= len(data)
            await self._calls(gs.SESSIONS_WRITE, gs.SessionsWriteParams(
                machine_id=machine_id, session_id=info.session_id, data=data[at : at + MAX_CHUNK],
                eof=eof and last), caller)  # fmt: skip

    async def stream_input(self, sandbox_id: str, messages: AsyncIterator[envd.StreamInputRequest],
                           caller: Caller) -> envd.Empty:  # fmt: skip
        """A client stream: ``start`` names the process, then ``data`` as it comes."""
        info: ss.SessionInfo | None = None
        async for m in messages:
            if m.start is not None and info is None:
                info = await self._find(sandbox_id, m.start.process, caller)
            elif m.data is not None:
                if info is None:
                    raise InvalidParams("a StreamInput stream starts with its start message")
                data = m.data.input.stdin or m.data.input.pty or b""
                await self._write(sandbox_id, info, data, caller)
        return envd.Empty()

    async def close_stdin(self, sandbox_id: str, m: envd.SelectRequest,
                          caller: Caller) -> envd.Empty:  # fmt: skip
        info = await self._find(sandbox_id, m.process, caller)
        await self._write(sandbox_id, info, b"", caller, eof=True)
        return envd.Empty()

    async def send_signal(self, sandbox_id: str, m: envd.SendSignalRequest,
                          caller: Caller) -> envd.Empty:  # fmt: skip
        signal = _SIGNALS.get(m.signal)
        if signal is None:
            raise InvalidParams(f"signal {m.signal} is not one envd sends", field="signal")
        info = await self._find(sandbox_id, m.process, caller)
        sent = await self._calls(gs.SESSIONS_SIGNAL, gs.SessionsSignalParams(
            machine_id=sandbox_id, session_id=info.session_id, signal=signal), caller)  # fmt: skip
        if not sent.signaled:
            raise NotFound(f"process with pid {info.pid} has exited")
        return envd.Empty()

    async def update(self, sandbox_id: str, m: envd.UpdateRequest, caller: Caller) -> envd.Empty:
        info = await self._find(sandbox_id, m.process, caller)
        if m.pty is not None and m.pty.size.cols and m.pty.size.rows:
            await self._calls(gs.SESSIONS_RESIZE, gs.SessionsResizeParams(
                machine_id=sandbox_id, session_id=info.session_id, cols=m.pty.size.cols,
                rows=m.pty.size.rows), caller)  # fmt: skip
        return envd.Empty()


async def _events(
    stream: ByteStream, *, pty: bool, keepalive_s: float | None
) -> AsyncIterator[envd.ProcessEventMessage]:
    """The session's output records as data events, until its stream ends. The receive in
    flight is kept across keepalives: a chunk it took is never dropped."""
    reader = ss.RecordReader()
    receiving = asyncio.create_task(stream.receive())
    try:
        while True:
            done, _ = await asyncio.wait({receiving}, timeout=keepalive_s)
            if not done:
                yield _KEEPALIVE
                continue
            chunk = receiving.result()
            if not chunk:
                return
            receiving = asyncio.create_task(stream.receive())
            for kind, payload in reader.feed(chunk):
                if kind is ss.RecordKind.NOTICE:
                    continue  # output a slow reader missed: envd's protocol has no word for it
                if pty:
                    yield _event(data=envd.DataEvent(pty=payload))
                elif kind is ss.RecordKind.STDERR:
                    yield _event(data=envd.DataEvent(stderr=payload))
                else:
                    yield _event(data=envd.DataEvent(stdout=payload))
    finally:
        await cancel_and_join(receiving)
