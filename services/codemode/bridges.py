"""Bridges: an OpenAPI service or a remote MCP server as a run's provider.

Configured per instance (``codemode.bridges.set``), kept by the store with the authorization
sealed. They are called from the codemode service, never from the sandbox, so the sandbox
never sees the authorization; the service itself may reach the network, so a bridge's URLs are
the operator's and the instance owner's trust (see the README's security section).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
import httpx2
import msgspec

from contracts.errors import InvalidParams, MethodNotFound, ProviderError, ToolError
from contracts.gateway.codemode import McpBridge, OpenApiBridge
from controlplane.security.crypto import SecretBox
from controlplane.store import CodemodeRecords
from services.codemode import stubs
from services.codemode.engine import ToolProvider

if TYPE_CHECKING:
    from mcp import Client

HTTP_TIMEOUT_S = 30.0
_METHODS = ("get", "put", "post", "delete", "patch")


async def bridge_providers(
    records: CodemodeRecords, box: SecretBox, instance_id: str
) -> list[ToolProvider]:
    found: list[ToolProvider] = []
    for bridge in await records.bridges(instance_id):
        auth = box.decrypt(bridge.authorization) if bridge.authorization else None
        if isinstance(bridge, OpenApiBridge):
            found.append(OpenApiProvider(bridge, auth))
        else:
            found.append(McpProvider(bridge, auth))
    return found


def _headers(auth: str | None) -> dict[str, str]:
    return {"Authorization": auth} if auth else {}


class OpenApiProvider:
    """``await api.getPet(petId=1)``: an operation by operationId; path, query and header
    parameters by name, the JSON body as ``body``."""

    def __init__(self, bridge: OpenApiBridge, auth: str | None) -> None:
        self.name = bridge.name
        self._bridge = bridge
        self._auth = auth
        self._spec: dict[str, Any] | None = None

    async def _get(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        if self._spec is None:
            async with session.get(self._bridge.spec_url) as resp:
                if resp.status != 200:
                    raise ProviderError(f"{self.name}: spec answered HTTP {resp.status}")
                self._spec = msgspec.json.decode(await resp.read())
        return self._spec

    def _operations(self, spec: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
        ops = {}
        for path, item in (spec.get("paths") or {}).items():
            for verb in _METHODS:
                op = item.get(verb) if isinstance(item, dict) else None
                if isinstance(op, dict) and isinstance(op.get("operationId"), str):
                    ops[op["operationId"]] = (verb, path, op)
        return ops

    async def call(self, path: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout, headers=_headers(self._auth)) as s:
            op = self._operations(await self._get(s)).get(path)
            if op is None:
                raise MethodNotFound(f"{self.name} has no operation {path!r}")
            if args:
                raise InvalidParams(f"{self.name}.{path} takes keyword arguments", field="$")
            verb, url_path, spec = op
            url, query, headers = self._request(url_path, spec, dict(kwargs))
            body = kwargs.get("body")
            async with s.request(verb, url, params=query, headers=headers, json=body) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    raise ToolError(f"{self.name}.{path}: HTTP {resp.status}: {text[:500]}",
                                    data={"status": resp.status})  # fmt: skip
                return msgspec.json.decode(text) if "json" in resp.content_type else text

    def _request(
        self, url_path: str, op: dict[str, Any], kwargs: dict[str, Any]
    ) -> tuple[str, dict[str, str], dict[str, str]]:
        query: dict[str, str] = {}
        headers: dict[str, str] = {}
        for param in op.get("parameters") or []:
            name, where = param.get("name"), param.get("in")
            if name not in kwargs:
                if param.get("required"):
                    raise InvalidParams(f"missing parameter {name!r}", field=f"$.{name}")
                continue
            value = str(kwargs[name])
            if where == "path":
                url_path = url_path.replace("{" + name + "}", quote(value, safe=""))
            elif where == "query":
                query[name] = value
            elif where == "header":
                headers[name] = value
        return self._bridge.base_url.rstrip("/") + url_path, query, headers

    async def describe(self) -> str:
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout, headers=_headers(self._auth)) as s:
            spec = await self._get(s)
        lines = [f"class _{stubs.ident(self.name)}:"]
        for op_id, (_verb, _path, op) in self._operations(spec).items():
            props, required = {}, []
            for p in op.get("parameters") or []:
                if isinstance(p, dict) and isinstance(p.get("name"), str):
                    props[p["name"]] = p.get("schema", {})
                    if p.get("required"):
                        required.append(p["name"])
            if "requestBody" in op:
                props["body"] = {}
            doc = str(op.get("summary") or op.get("description") or "")
            schema = {"properties": props, "required": required}
            lines.append(stubs.method(op_id, schema, "Any", doc))
        if len(lines) == 1:
            lines.append("    pass")
        body = "\n".join(lines)
        return f"{stubs.HEADER}\n\n{body}\n\n{stubs.ident(self.name)}: _{stubs.ident(self.name)}\n"


def _mcp_sdk() -> tuple[type[Client], Callable[..., Any]]:
    """The SDK's client, imported by the first run with an MCP bridge (in a thread, off the
    event loop), not by every codemode start: it is most of a second of imports."""
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    return Client, streamable_http_client


class McpProvider:
    """``await tools.add(a=1, b=2)``: a remote MCP server's tools (streamable HTTP)."""

    def __init__(self, bridge: McpBridge, auth: str | None) -> None:
        self.name = bridge.name
        self._bridge = bridge
        self._auth = auth

    @asynccontextmanager
    async def _client(self) -> AsyncIterator[Client]:
        client_of, transport = await asyncio.to_thread(_mcp_sdk)
        # The SDK leaves a client it was given open: closed here, or its sockets leak.
        async with (
            httpx2.AsyncClient(headers=_headers(self._auth), timeout=HTTP_TIMEOUT_S) as http,
            client_of(transport(self._bridge.url, http_client=http)) as client,
        ):
            yield client

    async def call(self, path: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if args:
            raise InvalidParams(f"{self.name}.{path} takes keyword arguments", field="$")
        async with self._client() as client:
            result = await client.call_tool(path, kwargs)
        if result.is_error:
            text = " ".join(getattr(c, "text", "") for c in result.content)
            raise ToolError(f"{self.name}.{path}: {text[:500]}")
        if result.structured_content is not None:
            return result.structured_content
        texts = [getattr(c, "text", None) for c in result.content]
        return texts[0] if len(texts) == 1 else texts

    async def describe(self) -> str:
        async with self._client() as client:
            listed = await client.list_tools()
        lines = [f"class _{stubs.ident(self.name)}:"]
        for tool in listed.tools:
            schema = tool.input_schema
            lines.append(stubs.method(tool.name, schema, "Any", tool.description or ""))
        if len(lines) == 1:
            lines.append("    pass")
        body = "\n".join(lines)
        return f"{stubs.HEADER}\n\n{body}\n\n{stubs.ident(self.name)}: _{stubs.ident(self.name)}\n"
