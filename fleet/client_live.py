"""FleetClient's live methods: streamed exec and the daemon's log (a mixin of FleetClient)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

import aiohttp
import msgspec

from contracts import gateway_live as live
from contracts.daemon_rpc import DEFAULT_EXEC_TIMEOUT_S, ExecCommandResult, OutputChunk
from contracts.errors import ERROR_HEADER, FleetError
from contracts.jsonrpc import MethodSpec, P, R, decode_result, encode_call, new_params

StreamItem = OutputChunk | ExecCommandResult
_CHUNK = msgspec.json.Decoder(OutputChunk)


class LiveClient:
    if TYPE_CHECKING:  # provided by FleetClient
        url: str
        _ids: itertools.count[int]

        @property
        def session(self) -> aiohttp.ClientSession: ...
        async def call(self, spec: MethodSpec[P, R], params: P, *,
                       timeout_s: float | None = None) -> R: ...  # fmt: skip
        def _unreachable(self, exc: Exception) -> Exception: ...
        def _refused(self) -> Exception: ...
        def http_error(self, status: int, body: bytes = b"",
                       header: str | None = None) -> FleetError: ...  # fmt: skip

    async def daemon_log(self, machine_id: str, lines: int = 200) -> list[str]:
        params = new_params(live.DaemonLogRequest, machine_id=machine_id, lines=lines)
        return (await self.call(live.MACHINES_DAEMON_LOG, params)).lines

    async def exec_via_stream_method(
        self, machine_id: str, command: list[str], *, timeout_s: float | None = None,
        cwd: str | None = None, env: dict[str, str] | None = None,
    ) -> ExecCommandResult:  # fmt: skip
        """machines.execStream answered once (POST /rpc), for a path that buffers streams."""
        timeout = timeout_s or DEFAULT_EXEC_TIMEOUT_S
        params = new_params(live.MachineExecStreamParams, machine_id=machine_id, command=command,
                            timeout_s=timeout, cwd=cwd, env=env)  # fmt: skip
        return await self.call(live.MACHINES_EXEC_STREAM, params, timeout_s=timeout + 30.0)

    async def exec_stream(
        self, machine_id: str, command: list[str], *, timeout_s: float | None = None,
        cwd: str | None = None, env: dict[str, str] | None = None,
    ) -> AsyncGenerator[StreamItem, None]:  # fmt: skip
        """The command's output chunks as it produces them, then its result. Leaving the
        iteration early (or a Ctrl-C) closes the stream, which kills the remote command."""
        spec, wait = live.MACHINES_EXEC_STREAM, timeout_s or DEFAULT_EXEC_TIMEOUT_S
        params = new_params(live.MachineExecStreamParams, machine_id=machine_id, command=command,
                            timeout_s=wait, cwd=cwd, env=env)  # fmt: skip
        body = encode_call(spec, params, next(self._ids))
        timeout = aiohttp.ClientTimeout(total=wait + 30.0, sock_read=None)
        try:
            url, headers = f"{self.url}{live.RPC_STREAM_PATH}", {"Content-Type": "application/json"}
            async with self.session.post(url, data=body, timeout=timeout, headers=headers) as resp:
                if resp.content_type != "text/event-stream":  # an error before the stream
                    body = await resp.read()
                    if resp.status == 200:  # a JSON-RPC answer: its error
                        decode_result(spec, body)
                    raise self.http_error(resp.status, body, resp.headers.get(ERROR_HEADER))
                async for event, data in sse_events(resp.content):
                    if event == live.SSE_OUTPUT:
                        yield _CHUNK.decode(data)
                    elif event == live.SSE_RESULT:
                        yield decode_result(spec, data)
                        return
        except aiohttp.ClientConnectionError as exc:
            raise self._unreachable(exc) from None
        raise FleetError("the stream ended without a result")


async def sse_events(content: aiohttp.StreamReader) -> AsyncGenerator[tuple[str, bytes], None]:
    """(event name, data) of each server-sent event; comments (keepalives) skipped."""
    kind, data = "message", list[bytes]()
    async for raw in content:
        line = raw.rstrip(b"\r\n")
        if line:
            name, _, value = line.partition(b":")
            value = value.removeprefix(b" ")
            if name == b"event":
                kind = value.decode()
            elif name == b"data":
                data.append(value)
            continue
        if data:
            yield kind, b"\n".join(data)
        kind, data = "message", []
