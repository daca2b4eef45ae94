"""A sandbox's own requests on the front's listener: which sandbox and port each is for, who
sends it, and where it goes.

Which: a request is a sandbox's when its ``Host`` is ``{port}-{sandboxId}.{domain}`` (what a
reverse proxy with a wildcard certificate hands over), or it names one in the headers the SDKs
send with ``E2B_SANDBOX_URL`` (``E2b-Sandbox-Id``, ``E2b-Sandbox-Port``): never by anything the
machine says. Port 49983 is envd's API, 49999 the code interpreter's.

Who: every envd request but ``GET /health`` carries the sandbox's access token
(``X-Access-Token``); a request to one of its ports (the code interpreter's among them, as on
E2B; any other port only when the sandbox is private) its traffic token
(``E2B-Traffic-Access-Token``), which opens no envd call. Each is checked per request: it reaches
that sandbox and no other, and the request runs with the rights of the fleetd token it was handed
to (as the store has them now: revoked, it reaches nothing). A bad token counts against the
address's bad-secret budget, as a bad bearer token does.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import msgspec
from aiohttp import web

from contracts.e2b import control as api
from contracts.errors import FleetError, Forbidden, InvalidParams, NotFound, Unauthorized
from controlplane.store import Store, TokenHolder
from services.gateway.auth import BadSecrets, Caller, current_caller
from services.gateway.e2b.sandboxes import ASLEEP, GONE


class Target(NamedTuple):
    sandbox_id: str
    port: int


class Reached(NamedTuple):
    """A sandbox request's target, and the caller its token runs as."""

    target: Target
    caller: Caller


def host_pattern(domain: str) -> re.Pattern[str]:
    """A sandbox's host names under ``domain`` (its port, then its id)."""
    return re.compile(rf"(\d{{1,5}})-([A-Za-z0-9][A-Za-z0-9-]{{0,63}})\.{re.escape(domain)}",
                      re.IGNORECASE)  # fmt: skip


def target_of(request: web.Request, hosts: re.Pattern[str]) -> Target | None:
    """The sandbox and port a request is for; None: a control API request."""
    if (m := hosts.fullmatch(request.host)) is not None:
        return Target(m[2], _port(m[1]))
    sandbox_id = request.headers.get(api.SANDBOX_ID_HEADER)
    if sandbox_id is None:
        return None
    return Target(sandbox_id, _port(request.headers.get(api.SANDBOX_PORT_HEADER,
                                                        str(api.ENVD_PORT))))  # fmt: skip


def _port(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise InvalidParams(f"{raw!r} is not a port (1-65535)", field=api.SANDBOX_PORT_HEADER)
    return int(raw)


class Doorman:
    """Who a sandbox request comes from (see the module)."""

    def __init__(self, store: Store, guesses: BadSecrets) -> None:
        self._store = store
        self._guesses = guesses

    async def caller(self, request: web.Request, target: Target) -> Caller:
        """The caller of an envd or interpreter request: its access token's."""
        token = request.headers.get(api.ACCESS_TOKEN_HEADER, "")
        holder = await self._store.e2b.holder(token) if token else None
        if holder is None or holder.traffic or holder.sandbox_id != target.sandbox_id:
            refused = Unauthorized(
                "unauthorized access: this sandbox's access token "
                f"({api.ACCESS_TOKEN_HEADER}) is missing or not its own"
            )
            raise self._guesses.refuse("sandbox token", request.remote or "", refused)
        return await self._standing(holder)

    async def visitor(self, request: web.Request, target: Target) -> Caller:
        """The caller of a request to one of the sandbox's ports (the code interpreter's, a
        private sandbox's others): its traffic token's (or its access token's, which reaches
        more); refused 403, as E2B's proxy refuses it."""
        token = (request.headers.get(api.TRAFFIC_TOKEN_HEADER)
                 or request.headers.get(api.ACCESS_TOKEN_HEADER) or "")  # fmt: skip
        holder = await self._store.e2b.holder(token) if token else None
        if holder is None or holder.sandbox_id != target.sandbox_id:
            refused = Forbidden(
                f"this sandbox's ports are private: its traffic token "
                f"({api.TRAFFIC_TOKEN_HEADER}) is missing or not its own"
            )
            if not token:
                raise refused
            raise self._guesses.refuse("sandbox token", request.remote or "", refused)
        return await self._standing(holder)

    async def _standing(self, holder: TokenHolder) -> Caller:
        caller = await current_caller(self._store, holder.caller_id)
        if caller is None:
            raise Unauthorized(
                "the fleetd token this sandbox's access token runs as no longer "
                "stands (revoked, expired or its user disabled)"
            )
        return caller


async def health(store: Store, target: Target) -> web.Response:
    """``GET /health``: 204 while the sandbox runs; 502 saying it "was not found" once it is
    paused, killed or gone (what tells the SDKs it is not running)."""
    record = await store.e2b.get(target.sandbox_id)
    try:
        machine = await store.get_machine(target.sandbox_id) if record else None
    except NotFound:
        machine = None
    if machine is None or machine.status in ASLEEP | GONE:
        body = {"sandboxId": target.sandbox_id, "message": "The sandbox was not found",
                "code": 502}  # fmt: skip
        return web.Response(status=502, body=msgspec.json.encode(body),
                            content_type="application/json")  # fmt: skip
    return web.Response(status=204)


Serve = Callable[[web.Request, Reached], Awaitable[web.StreamResponse]]


def http_error(exc: FleetError) -> web.Response:
    """envd's plain HTTP routes' error: ``{"code": <status>, "message": ...}``."""
    body = msgspec.json.encode(api.ApiError(code=exc.http_status, message=exc.message))
    return web.Response(status=exc.http_status, body=body, content_type="application/json")
