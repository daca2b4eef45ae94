"""The daemon's byte streams: one subscription for the platform's side of all of them, and
``tool.execPipe``, a command whose stdin and stdout are a stream.

A method that opens a stream calls ``ByteStreamHub.open()``, starts the stream before it answers
(so the platform's first frames find it) and answers ``StreamOpened``. Frames for a stream the
daemon does not know (it ended, or the daemon restarted) are answered with an abort, so the
platform's side stops at once instead of timing out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
from collections.abc import Coroutine
from pathlib import Path

import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from base.byte_stream import ByteStream
from base.relay import relay
from base.tasks import OwnedTasks
from contracts.bus import subjects
from contracts.daemon import streams as s
from contracts.daemon.rpc import EXEC_PIPE, ExecPipeParams
from contracts.errors import StreamAborted, ToolError, TooManyStreams
from contracts.rpc.jsonrpc import handles
from daemon.processes import tools
from daemon.processes.env import ProcessEnv

log = structlog.get_logger(__name__)

#: Open streams per daemon (each holds at most one window of received bytes).
MAX_STREAMS = 64
#: How long ``close`` waits for a stream's task to clean up before cancelling it.
_JOIN_GRACE_S = 2.0


class ByteStreamHub:
    """The machine's open byte streams and the one set of tasks that serve them (a pipe, a
    tunnel, a file transfer, a terminal's viewer), all joined by ``close``."""

    def __init__(self, machine_id: str, *, max_streams: int = MAX_STREAMS) -> None:
        self.machine_id = machine_id
        self.max_streams = max_streams
        self._nc: NATS | None = None
        self._streams: dict[str, ByteStream] = {}
        self._tasks = OwnedTasks("byte-streams", drain_s=_JOIN_GRACE_S,
                                 failed_event="stream.task_failed")  # fmt: skip

    def spawn(self, work: Coroutine[None, None, None], *, name: str) -> None:
        """Run ``work`` (which serves a stream and closes it) until it ends or ``close``."""
        self._tasks.spawn(work, name=name)

    @property
    def running_tasks(self) -> int:
        return len(self._tasks)

    async def serve(self, nc: NATS) -> None:
        """Receive the platform's frames of every stream of this machine on ``nc``."""
        self._nc = nc
        await nc.subscribe(subjects.stream_to_machine(self.machine_id, "*"), cb=self._on_frame)

    def open(self, *, window: int = s.DEFAULT_WINDOW,
             chunk_size: int = s.DEFAULT_CHUNK) -> ByteStream:  # fmt: skip
        """A new stream, registered; the caller starts it and owns closing it."""
        if len(self._streams) >= self.max_streams:
            raise TooManyStreams(f"this machine already has {self.max_streams} open streams")
        sid = secrets.token_hex(16)
        subject = subjects.stream_from_machine(self.machine_id, sid)

        async def publish(frame: bytes) -> None:
            await self._publish(subject, frame)

        stream = ByteStream(sid, publish, window=window, chunk_size=chunk_size,
                            on_close=self._forget)  # fmt: skip
        self._streams[sid] = stream
        return stream

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def _forget(self, stream: ByteStream) -> None:
        self._streams.pop(stream.stream_id, None)

    async def _publish(self, subject: str, frame: bytes) -> None:
        if self._nc is None:
            raise StreamAborted("the daemon is not connected")
        await self._nc.publish(subject, frame)  # buffered by the client, flushed in order

    async def _on_frame(self, msg: Msg) -> None:
        sid = msg.subject.rsplit(".", 1)[-1]
        stream = self._streams.get(sid)
        if stream is not None:
            await stream.feed(msg.data)
            return
        if msg.data[:1] != bytes([s.FrameKind.ABORT]) and len(sid) == 32:
            with contextlib.suppress(nats.errors.Error):
                await self._publish(subjects.stream_from_machine(self.machine_id, sid),
                                    s.encode_abort("no such stream on this machine"))  # fmt: skip

    async def close(self) -> None:
        """Abort every open stream (the daemon is going away), then join the tasks that served
        them: each sees its stream aborted and cleans up (a process killed, a socket closed, a
        temporary file removed); one that does not within a grace is cancelled."""
        for stream in list(self._streams.values()):
            await stream.abort("the daemon is stopping")
        await self._tasks.close()
        for stream in list(self._streams.values()):
            await stream.aclose()


class Pipes:
    """``tool.execPipe``: the command's stdin is the platform's side of the stream, its
    stdout and stderr (merged) are ours, and its exit code is our end frame's code. An abort
    from either side kills its process group."""

    def __init__(self, *, hub: ByteStreamHub, home: Path, env: ProcessEnv) -> None:
        self._hub = hub
        self._home = home
        self._env = env

    @handles(EXEC_PIPE)
    async def exec_pipe(self, params: ExecPipeParams, _: None) -> s.StreamOpened:
        cwd = tools.resolve_path(self._home, params.cwd, "$.cwd") if params.cwd else self._home
        if not cwd.is_dir():
            raise ToolError(f"cwd {cwd} is not a directory on the machine")
        stream = self._hub.open(chunk_size=params.chunk_size, window=params.window)
        try:
            proc = await asyncio.create_subprocess_exec(
                *params.command, cwd=cwd,
                env=self._env(params.env),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True,
                limit=params.chunk_size,  # the reader holds up to 2 chunks: reads fill one
            )  # fmt: skip
        except OSError as exc:
            await stream.aclose()
            raise tools.start_failed(params.command[0], exc) from None
        await stream.start()
        self._hub.spawn(self._run(stream, proc, params.chunk_size), name=f"pipe-{proc.pid}")
        return s.StreamOpened(stream_id=stream.stream_id)

    async def _run(self, stream: ByteStream, proc: asyncio.subprocess.Process,
                   chunk: int) -> None:  # fmt: skip
        try:
            # The input ending does not end the pipe: the output goes on until the exit.
            await relay(_stdout(stream, proc, chunk), _stdin(stream, proc), until="first")
        except StreamAborted as exc:
            log.info("pipe.aborted", stream_id=stream.stream_id, reason=exc.message)
        except Exception as exc:  # a task boundary: never leave the process behind
            log.exception("pipe.failed", stream_id=stream.stream_id, error=repr(exc))
            await stream.abort("the daemon failed")
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            await stream.aclose()


async def _stdin(stream: ByteStream, proc: asyncio.subprocess.Process) -> None:
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        async for chunk in stream:
            proc.stdin.write(chunk)
            await proc.stdin.drain()  # credit is granted only once the process took it
    proc.stdin.close()


async def _stdout(stream: ByteStream, proc: asyncio.subprocess.Process, chunk: int) -> None:
    assert proc.stdout is not None
    while data := await proc.stdout.read(chunk):
        await stream.send(data)  # waits for credit: the process blocks on a full pipe
    await stream.end(await proc.wait())
