"""E2B's control API on the front's listener: the routes its SDKs call (both the current
``/v2`` ones and the older ones), each answered as the SDKs' generated clients parse it
(``contracts/e2b/control.py``); every call authenticated by its API key (``X-API-Key``, or
``Authorization: Bearer``), a fleetd access token or the admin token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
from aiohttp import web

from contracts.e2b import control as api
from contracts.errors import Conflict, FleetError, NotFound, Unauthorized
from contracts.gateway.limits import INSTANCES_GET_LIMITS
from contracts.gateway.types import InstanceRef
from contracts.ids import SNAPSHOT_ID_RE
from services.gateway.auth import Caller, CallerResolver
from services.gateway.e2b.calls import Calls
from services.gateway.e2b.connect import decode
from services.gateway.e2b.copies import Copies
from services.gateway.e2b.errors import rest_error, unsupported
from services.gateway.e2b.listing import Query, listed, metrics
from services.gateway.e2b.network import egress_of, set_egress
from services.gateway.e2b.sandboxes import Sandboxes

B = TypeVar("B", bound=msgspec.Struct)
Handler = Callable[[web.Request, Caller], Awaitable[web.StreamResponse]]
#: What E2B's cloud alone has, refused by name (docs/e2b.md says why each).
_CLOUD_ONLY = ("templates", "volumes", "secrets", "teams", "api-keys", "access-tokens")
#: The versions of E2B's API a path may start with (``Template.build`` asks /v3/templates).
_VERSIONS = ("v2", "v3")


def add_control_routes(app: web.Application, sandboxes: Sandboxes, calls: Calls,
                       resolve: CallerResolver) -> None:  # fmt: skip
    """The control API's routes on ``app``."""
    copies = Copies(sandboxes, calls)

    def route(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def answer(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request, await _caller(request, resolve))
            except FleetError as exc:
                return rest_error(exc)

        return answer

    async def create(request: web.Request, caller: Caller) -> web.Response:
        made = await sandboxes.create(await _body(request, api.NewSandbox), caller)
        return _json(made, 201)

    async def detail(request: web.Request, caller: Caller) -> web.Response:
        return _json(await sandboxes.detail(_id(request), caller))

    async def kill(request: web.Request, caller: Caller) -> web.Response:
        if await sandboxes.kill(_id(request), caller):
            return web.Response(status=204)
        return rest_error(_not_found(_id(request)))

    async def set_timeout(request: web.Request, caller: Caller) -> web.Response:
        body = await _body(request, api.SetTimeout)
        await sandboxes.set_timeout(_id(request), body.timeout, caller)
        return web.Response(status=204)

    async def pause(request: web.Request, caller: Caller) -> web.Response:
        await _body(request, api.PauseRequest)
        if await sandboxes.pause(_id(request), caller):
            return web.Response(status=204)
        return rest_error(_already_paused(_id(request)))

    async def connect(request: web.Request, caller: Caller) -> web.Response:
        body = await _body(request, api.ConnectSandbox)
        got, resumed = await sandboxes.connect(_id(request), body.timeout, caller)
        return _json(got, 201 if resumed else 200)

    async def listing(request: web.Request, caller: Caller) -> web.Response:
        page, more = await listed(sandboxes, sandboxes.store, Query(request.query), caller)
        resp = _json(page)
        if more:
            resp.headers[api.NEXT_TOKEN_HEADER] = more
        return resp

    async def usage(request: web.Request, caller: Caller) -> web.Response:
        record, _ = await sandboxes.find(_id(request), caller)
        limits = await calls(INSTANCES_GET_LIMITS, InstanceRef(instance_id=record.instance_id),
                             caller)  # fmt: skip
        got = await metrics(
            calls,
            record.id,
            max(1, round(limits.cpus)),
            request.query.get("start"),
            request.query.get("end"),
            caller,
        )
        return _json(got)

    async def network(request: web.Request, caller: Caller) -> web.Response:
        body = await _body(request, api.NetworkUpdate)
        record, _ = await sandboxes.find(_id(request), caller)
        policy = egress_of(body, body.allow_internet_access)
        if policy is not None:
            await set_egress(calls, record.instance_id, policy, caller)
        return web.Response(status=204)

    async def snapshot(request: web.Request, caller: Caller) -> web.Response:
        body = await _body(request, api.NewSnapshot)
        return _json(await copies.snapshot(_id(request), body, caller), 201)

    async def snapshots(request: web.Request, caller: Caller) -> web.Response:
        q = request.query
        return _json(await copies.snapshots(q.get("sandboxID"), q.get("name"), caller))

    async def delete_snapshot(request: web.Request, caller: Caller) -> web.StreamResponse:
        if not SNAPSHOT_ID_RE.fullmatch(_id(request)):
            return await cloud_only(request, caller)
        if await copies.delete(_id(request), caller):
            return web.Response(status=204)
        return rest_error(NotFound(f"snapshot {_id(request)} not found"))

    async def fork(request: web.Request, caller: Caller) -> web.Response:
        body = await _body(request, api.ForkRequest)
        return _json(await copies.fork(_id(request), body, caller), 201)

    async def cloud_only(request: web.Request, caller: Caller) -> web.Response:
        parts = request.path.strip("/").split("/")
        what = "/".join(parts[:2]) if parts[0] in _VERSIONS else parts[0]
        raise unsupported(
            f"{request.method} /{what}",
            "it is part of E2B's cloud (templates are fleetd environments: "
            "FLEET_E2B_TEMPLATES_SPEC; docs/e2b.md)",
        )

    r = app.router
    for prefix in ("", "/v2"):
        r.add_post(f"{prefix}/sandboxes", route(create))
        r.add_get(f"{prefix}/sandboxes", route(listing))
        r.add_post(f"{prefix}/sandboxes/{{id}}/connect", route(connect))
    r.add_post("/sandboxes/{id}/resume", route(connect))
    r.add_get("/sandboxes/{id}", route(detail))
    r.add_delete("/sandboxes/{id}", route(kill))
    r.add_post("/sandboxes/{id}/timeout", route(set_timeout))
    r.add_post("/sandboxes/{id}/pause", route(pause))
    r.add_get("/sandboxes/{id}/metrics", route(usage))
    r.add_put("/sandboxes/{id}/network", route(network))
    r.add_post("/sandboxes/{id}/snapshots", route(snapshot))
    r.add_get("/snapshots", route(snapshots))
    r.add_delete("/templates/{id}", route(delete_snapshot))
    r.add_post("/sandboxes/{id}/fork", route(fork))
    for version in ("", *(f"/{v}" for v in _VERSIONS)):
        for what in _CLOUD_ONLY:
            r.add_route("*", f"{version}/{what}", route(cloud_only))
            r.add_route("*", f"{version}/{what}/{{tail:.*}}", route(cloud_only))


async def _caller(request: web.Request, resolve: CallerResolver) -> Caller:
    key = request.headers.get(api.API_KEY_HEADER, "")
    auth = request.headers.get("Authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    caller = await resolve(api.token_of(key)) if key else None
    if caller is None:
        raise Unauthorized("missing or invalid API key (X-API-Key: a fleetd access token, as "
                           "it is or as e2b_ and its bytes in hex)")  # fmt: skip
    return caller


async def _body(request: web.Request, kind: type[B]) -> B:
    return decode(await request.read(), kind)


def _id(request: web.Request) -> str:
    return request.match_info["id"]


def _json(value: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=msgspec.json.encode(value),
                        content_type="application/json")  # fmt: skip


def _not_found(sandbox_id: str) -> FleetError:
    return NotFound(f"sandbox {sandbox_id} not found")


def _already_paused(sandbox_id: str) -> FleetError:
    return Conflict(f"sandbox {sandbox_id} is paused already")
