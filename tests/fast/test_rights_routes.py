"""The rights table on the gateway's HTTP, WebSocket and MCP routes: every route of the console's
listener is in ``ROUTES``, a route nobody classified fails the walk, and each route into a machine
or into codemode refuses (403, or MCP's tool error naming Forbidden) exactly the callers that lack
its scope (``contracts.people.route_scope``; an MCP tool: its method's), for each role and a token
of each scope, as ``tests/fast/test_rights_table.py`` does for the methods. The real gateway app
on the fast layer's world, served on a loopback port; ``tests/integration/test_people.py`` and
``test_codemode_rights.py`` drive the same routes on the whole stack."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx2
from aiohttp.test_utils import TestServer
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from contracts.errors import Forbidden
from contracts.gateway.codemode import CODEMODE_RUN, MCP_PATH, RUN_STREAM_PATH
from contracts.gateway.live import RPC_STREAM_PATH
from contracts.gateway.rpc import METHOD_SCOPES
from contracts.gateway.sessions import ATTACH_PATH
from contracts.people import route_scope
from contracts.ports import TUNNEL_PATH
from services.gateway.auth import Caller
from services.gateway.http import make_app
from tests.fast.conftest import World
from tests.fast.test_rights_table import SESSION, Who, everyone

FILES_ROUTE = "/machines/{machine_id}/files/{path}"
#: Needs no token and shows nothing of anyone's (sign-in's own routes check what they take).
PUBLIC = "public"
#: Its JSON-RPC methods take their own scopes: tests/fast/test_rights_table.py walks them.
METHODS = "methods"
WALK_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Probe:
    """One request on a route: ``send(session, base URL, machine id (MCP's: the caller's bearer
    token), instance id)`` answers whether it was refused for a right."""

    send: Callable[[aiohttp.ClientSession, str, str, str], Any]


async def _status(s: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> bool:
    async with s.request(method, url, **kw) as resp:
        return resp.status == Forbidden.http_status


async def _ws(s: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with s.ws_connect(url):
            return False
    except aiohttp.WSServerHandshakeError as refused:
        return refused.status == Forbidden.http_status


async def _mcp(base: str, token: str, i: str) -> bool:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=WALK_TIMEOUT_S) as http,
        Client(streamable_http_client(f"{base}{MCP_PATH}", http_client=http)) as client,
    ):
        answer = await client.call_tool("run_code", {"code": "1", "instance_id": i})
    return answer.is_error and f"error {Forbidden.code}" in json.dumps(answer.model_dump())


def _get(path: str) -> Probe:
    return Probe(lambda s, base, m, _: _status(s, "GET", base + path.format(m=m)))


#: Every route of the console's listener, by (method, path as the router spells it).
ROUTES: dict[tuple[str, str], str | Probe] = {
    ("GET", "/auth/login"): PUBLIC, ("GET", "/auth/callback"): PUBLIC,
    ("POST", "/auth/logout"): PUBLIC, ("GET", "/auth/me"): PUBLIC,
    ("GET", "/auth/config"): PUBLIC, ("POST", "/auth/device"): PUBLIC,
    ("POST", "/auth/device/token"): PUBLIC,
    ("GET", "/healthz"): PUBLIC, ("GET", "/"): PUBLIC, ("GET", "/static"): PUBLIC,
    ("POST", "/rpc"): METHODS, ("POST", RPC_STREAM_PATH): METHODS,
    ("GET", "/events"): _get("/events?machineId={m}"),
    ("POST", RUN_STREAM_PATH): Probe(lambda s, base, _, i: _status(
        s, "POST", base + RUN_STREAM_PATH, json={"code": "1", "instanceId": i})),
    ("*", MCP_PATH): Probe(lambda _, base, token, i: _mcp(base, token, i)),
    ("GET", ATTACH_PATH.replace("{machineId}", "{machine_id}")): Probe(lambda s, base, m, _: _ws(
        s, base + ATTACH_PATH.format(machineId=m, sessionId=SESSION))),
    ("GET", TUNNEL_PATH.replace("{machineId}", "{machine_id}")): Probe(lambda s, base, m, _: _ws(
        s, base + TUNNEL_PATH.format(machineId=m, port=3000))),
    ("GET", FILES_ROUTE): _get("/machines/{m}/files/a"),
    ("PUT", FILES_ROUTE): Probe(lambda s, base, m, _: _status(
        s, "PUT", f"{base}/machines/{m}/files/a", data=b"x")),
}  # fmt: skip


def _spelled(method: str, path: str) -> tuple[str, str]:
    """A route as ROUTES names it: HEAD is its GET's; path parameters by their router names."""
    return ("GET" if method == "HEAD" else method), path.replace("{machineId}", "{machine_id}")


@asynccontextmanager
async def served(
    world: World, callers: dict[str, Caller]
) -> AsyncIterator[tuple[str, set[tuple[str, str]]]]:
    """The gateway's console app on the world, its bearer tokens resolved to ``callers``: its
    URL, and its routes as ROUTES names them."""

    async def resolve(token: str) -> Caller | None:
        return callers.get(token)

    gateway = world.gateway_resolving(resolve)
    async with AsyncExitStack() as es:
        await es.enter_async_context(gateway.mcp)
        apps = make_app(gateway)
        server = await es.enter_async_context(TestServer(apps.console, host="127.0.0.1"))
        routes = {_spelled(r.method, r.resource.canonical)
                  for r in apps.console.router.routes() if r.resource is not None}  # fmt: skip
        yield str(server.make_url("")).rstrip("/"), routes


async def test_every_route_is_classified_and_refuses_as_the_table_says(world: World) -> None:
    m = await world.ready_machine()
    walkers = everyone(m.instance_id)
    callers = {f"token-{n}": who.caller for n, who in enumerate(walkers)}
    wrong: list[str] = []
    async with served(world, callers) as (base, apps_routes):
        unclassified = sorted(apps_routes - set(ROUTES))
        assert not unclassified, f"routes no one classified for rights: {unclassified}"
        assert not set(ROUTES) - apps_routes, "ROUTES names a route the gateway has not"
        for (method, path), how in sorted(ROUTES.items()):
            if isinstance(how, Probe):
                wrong += await _walk(base, method, path, how, walkers, m.id, m.instance_id)
    assert not wrong, "\n".join(wrong)


async def _walk(base: str, method: str, path: str, probe: Probe, walkers: list[Who], m: str,
                i: str) -> list[str]:  # fmt: skip
    scope = route_scope(method, path.replace("{machine_id}", m))
    scope = METHOD_SCOPES[CODEMODE_RUN.name] if path == MCP_PATH else scope
    assert scope is not None, f"{method} {path} reaches a machine or codemode with no scope"
    wrong = []
    for n, who in enumerate(walkers):
        token = f"token-{n}"
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession(headers=headers) as s, asyncio.timeout(WALK_TIMEOUT_S):
            target = token if path == MCP_PATH else m
            refused = await probe.send(s, base, target, i)
        if refused != (scope not in who.on_instance):
            said = "refused" if refused else "let through"
            wrong.append(f"{method} {path}: {who.name} ({scope}) was {said}")
    return wrong
