"""Streamed exec and the daemon's own log.

``tool.execStream`` runs a command exactly as ``tool.execCommand`` does (same cap, timeout and
tracking) and also publishes each piece of output on ``daemon.<machineId>.output.<streamId>``
as it is read; the machine's NATS user may publish there and nowhere else of the kind, so it
cannot inject output into another machine's stream. ``tool.execKill`` ends a running stream's
process group (the platform's answer to a user's Ctrl-C).
"""

from __future__ import annotations

import codecs
import itertools
import os
import signal
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path

import msgspec
import structlog

from base.tokenfd import DAEMON_LOG_VAR
from contracts.bus import subjects
from contracts.daemon.rpc import (
    EXEC_KILL,
    EXEC_STREAM,
    DaemonLogParams,
    DaemonLogResult,
    ExecCommandResult,
    ExecKillParams,
    ExecKillResult,
    ExecStreamParams,
    OutputChunk,
    OutputStream,
)
from contracts.errors import NotSupported
from contracts.rpc.jsonrpc import handles
from daemon.processes import tools
from daemon.processes.children import tail_lines
from daemon.processes.env import ProcessEnv
from daemon.processes.procs import ProcessManager

log = structlog.get_logger(__name__)
Publish = Callable[[str, bytes], Awaitable[None]]
_ENCODER = msgspec.json.Encoder()
#: Where the daemon's stdout goes, as this process sees it.
_STDOUT = Path("/proc/self/fd/1")


class ExecStreams:
    def __init__(
        self,
        *,
        home: Path,
        machine_id: str,
        env: ProcessEnv,
        output_cap: int,
        publish: Publish,
        procs: ProcessManager | None,
    ) -> None:
        self._home = home
        self._machine_id = machine_id
        self._env = env
        self._cap = output_cap
        self._publish = publish
        self._procs = procs
        #: stream id -> the pid (and process group) of its command while it runs.
        self._running: dict[str, int] = {}

    @handles(EXEC_STREAM)
    async def exec_stream(self, params: ExecStreamParams, _: None) -> ExecCommandResult:
        subject = subjects.exec_output(self._machine_id, params.stream_id)
        seq = itertools.count()
        decoders = {
            n: codecs.getincrementaldecoder("utf-8")("replace") for n in ("stdout", "stderr")
        }

        async def on_chunk(name: str, data: bytes) -> None:
            text = decoders[name].decode(data)  # a character split across reads waits
            if text:
                stream: OutputStream = "stderr" if name == "stderr" else "stdout"
                chunk = OutputChunk(seq=next(seq), stream=stream, data=text)
                await self._publish(subject, _ENCODER.encode(chunk))

        cwd = tools.resolve_path(self._home, params.cwd, "$.cwd") if params.cwd else self._home

        def spawned(pid: int) -> None:
            self._running[params.stream_id] = pid
            if self._procs is not None:
                self._procs.track_exec(pid, params.command, str(cwd))

        def reaped(pid: int) -> None:
            self._running.pop(params.stream_id, None)
            if self._procs is not None:
                self._procs.untrack_exec(pid)

        return await tools.exec_command(self._home, params, self._env, self._cap,
                                        on_spawn=spawned, on_exit=reaped,
                                        on_chunk=on_chunk)  # fmt: skip

    @handles(EXEC_KILL)
    async def exec_kill(self, params: ExecKillParams, _: None) -> ExecKillResult:
        pid = self._running.get(params.stream_id)
        if pid is None:
            return ExecKillResult(killed=False)
        # Still our unreaped child (it leaves _running when reaped): the pid cannot be reused.
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        log.info("tool.exec_killed", pid=pid)
        return ExecKillResult(killed=True)


async def daemon_log(params: DaemonLogParams, _: None) -> DaemonLogResult:
    """The last lines of wherever our stdout goes, when that is a file (the local provider's
    ``daemon.log``); a pipe or a terminal (a container's log driver) cannot be read back."""
    # A gvisor machine's stdout is a host descriptor gVisor cannot open again: its provider
    # gives the same file, read-only, at a path of its own.
    where = Path(os.environ.get(DAEMON_LOG_VAR) or _STDOUT)
    if not os.path.isfile(where):  # stat follows the fd, even to a path we cannot see
        raise NotSupported("this daemon's output does not go to a file it can read")
    return DaemonLogResult(lines=tail_lines(where, params.lines))
