"""``FleetClient``'s codemode methods (a mixin: ``fleet/client.py`` is at its size limit).

async with FleetClient(url, token) as fleet:
    result = await fleet.code_run("await machine.exec(['ls'])", machine_id=mid)
    async for event in fleet.code_stream(code):       # live events, then the result
        print(event)
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec

from contracts import codemode as cm
from contracts.errors import error_from_http, error_from_wire
from contracts.jsonrpc import MethodSpec, P, R, new_params

_EVENT = msgspec.json.Decoder(cm.RunEvent)


class CodemodeMethods:
    if TYPE_CHECKING:
        url: str

        @property
        def session(self) -> aiohttp.ClientSession: ...

        async def call(
            self, spec: MethodSpec[P, R], params: P, *, timeout_s: float | None = None
        ) -> R: ...

    async def code_run(
        self,
        code: str,
        *,
        machine_id: str | None = None,
        instance_id: str | None = None,
        timeout_s: float = cm.DEFAULT_TIMEOUT_S,
    ) -> cm.RunResult:
        params = new_params(cm.RunParams, code=code, machine_id=machine_id,
                            instance_id=instance_id, timeout_s=timeout_s)  # fmt: skip
        return await self.call(cm.CODEMODE_RUN, params, timeout_s=timeout_s + 30)

    async def code_stream(
        self,
        code: str,
        *,
        machine_id: str | None = None,
        instance_id: str | None = None,
        timeout_s: float = cm.DEFAULT_TIMEOUT_S,
    ) -> AsyncGenerator[cm.RunEvent | cm.RunResult, None]:
        """The run's events as they happen (``POST /codemode/run``), then its result."""
        params = new_params(cm.RunParams, code=code, machine_id=machine_id,
                            instance_id=instance_id, timeout_s=timeout_s)  # fmt: skip
        timeout = aiohttp.ClientTimeout(total=timeout_s + 30)
        async with self.session.post(
            self.url + cm.RUN_STREAM_PATH, data=msgspec.json.encode(params), timeout=timeout
        ) as resp:
            if resp.content_type == "application/json":
                raise error_from_http(resp.status, await resp.read())
            async for kind, body in _sse(resp.content):
                if kind == cm.RUN_STREAM_END.encode():
                    yield _end(body)
                    return
                yield _EVENT.decode(body)

    async def code_cancel(self, run_id: str) -> bool:
        params = new_params(cm.RunRef, run_id=run_id)
        return (await self.call(cm.CODEMODE_CANCEL, params)).cancelled

    async def code_list(
        self, instance_id: str | None = None, limit: int = 50
    ) -> list[cm.RunRecord]:
        params = new_params(cm.ListRunsParams, instance_id=instance_id, limit=limit)
        return (await self.call(cm.CODEMODE_LIST, params)).runs

    async def code_describe(
        self,
        providers: list[str] | None = None,
        *,
        machine_id: str | None = None,
        instance_id: str | None = None,
    ) -> dict[str, str]:
        params = new_params(cm.DescribeParams, providers=providers, machine_id=machine_id,
                            instance_id=instance_id)  # fmt: skip
        return (await self.call(cm.CODEMODE_DESCRIBE, params)).stubs

    async def code_set_bridge(
        self, instance_id: str, bridge: cm.OpenApiBridge | cm.McpBridge
    ) -> cm.BridgeInfo:
        if isinstance(bridge, cm.OpenApiBridge):
            params = new_params(cm.SetBridgeParams, instance_id=instance_id, openapi=bridge)
        else:
            params = new_params(cm.SetBridgeParams, instance_id=instance_id, mcp=bridge)
        return await self.call(cm.CODEMODE_BRIDGES_SET, params)

    async def code_bridges(self, instance_id: str) -> list[cm.BridgeInfo]:
        params = new_params(cm.BridgeListParams, instance_id=instance_id)
        return (await self.call(cm.CODEMODE_BRIDGES_LIST, params)).bridges

    async def code_remove_bridge(self, instance_id: str, name: str) -> bool:
        params = new_params(cm.BridgeRef, instance_id=instance_id, name=name)
        return (await self.call(cm.CODEMODE_BRIDGES_REMOVE, params)).removed


async def _sse(content: aiohttp.StreamReader) -> AsyncGenerator[tuple[bytes, bytes], None]:
    """(event, data) of each server-sent event message."""
    kind, data = b"message", list[bytes]()
    while raw := await content.readline():
        line = raw.rstrip(b"\r\n")
        if line:
            name, _, value = line.partition(b":")
            if name == b"event":
                kind = value.strip()
            elif name == b"data":
                data.append(value.removeprefix(b" "))
            continue
        if data:
            yield kind, b"\n".join(data)
        kind, data = b"message", []


def _end(body: bytes) -> cm.RunResult:
    decoded = msgspec.json.decode(body, type=dict[str, Any])
    if "error" in decoded and "runId" not in decoded:
        raise error_from_wire(decoded["error"])
    return msgspec.convert(decoded, cm.RunResult)
