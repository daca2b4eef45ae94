"""Refusals at the gateway's HTTP door, recorded in the audit log: a request whose token,
ticket or session does not stand (401), and a cookie-authenticated one without its CSRF token
(1082). An entry names what the request tried (the JSON-RPC method of a small /rpc body, else
the route's action), the machine its path names, and, for a token that exists but no longer
stands (expired, its user disabled), whose it is.
"""

from __future__ import annotations

import contextlib
import re

from aiohttp import web

from contracts.errors import CsrfRejected, Unauthorized
from contracts.gateway.audit import Action
from contracts.gateway.live import RPC_STREAM_PATH
from contracts.rpc.jsonrpc import request_method
from controlplane.security.tokens import TokenStore, is_live
from services.gateway.auth.access import Caller
from services.gateway.auth.audit_log import AuditLog, origin_of

#: A refused /rpc body is read for its method only up to this size.
_PEEK_BYTES = 64 * 1024
_MACHINE = re.compile(r"/machines/([^/]+)/")
_ATTACH = re.compile(r"/machines/[^/]+/sessions/[^/]+/attach")


async def attempted(request: web.Request) -> tuple[str, str | None]:
    """What a refused request tried (a method or an ``Action``), and the machine it named."""
    path = request.path
    found = _MACHINE.match(path)
    machine_id = found.group(1) if found else None
    if path in ("/rpc", RPC_STREAM_PATH):
        method = await _peek_method(request)
        return method or f"{request.method} {path}", machine_id
    if path == "/events":
        return Action.EVENTS_STREAM, machine_id
    if path.startswith("/codemode/"):
        return Action.CODEMODE_STREAM, machine_id
    if path.startswith("/mcp"):
        return Action.MCP, machine_id
    if _ATTACH.fullmatch(path):
        return Action.TERMINAL_ATTACH, machine_id
    if machine_id is not None and path.split("/")[3:4] == ["files"]:
        read = request.method in ("GET", "HEAD")
        return (Action.FILE_DOWNLOAD if read else Action.FILE_UPLOAD), machine_id
    return f"{request.method} {path}"[:128], machine_id


async def _peek_method(request: web.Request) -> str | None:
    size = request.content_length
    if not request.can_read_body or size is None or size > _PEEK_BYTES:
        return None
    with contextlib.suppress(web.HTTPException, OSError, ValueError):
        return request_method(await request.read())
    return None


async def record_csrf(audit: AuditLog | None, request: web.Request, caller: Caller,
                      error: CsrfRejected) -> None:  # fmt: skip
    """A signed-in user's request refused for its missing CSRF token: the user is known."""
    if audit is not None:
        method, machine_id = await attempted(request)
        audit.record(method, caller=caller, machine_id=machine_id, error=error,
                     origin=origin_of(request))  # fmt: skip


async def record_unauthenticated(audit: AuditLog | None, request: web.Request,
                                 tokens: TokenStore, bearer: str, *,
                                 look_up: bool) -> None:  # fmt: skip
    """A request refused 401. ``bearer``: the token it sent ("" for none); ``look_up``: ask
    the store whose it is (not once its address is past its budget of bad secrets)."""
    if audit is None or not audit.enabled:
        return
    method, machine_id = await attempted(request)
    actor, token_id, error = None, None, Unauthorized("missing or invalid bearer token")
    found = await tokens.identify(bearer) if bearer and look_up else None
    if found is not None:
        token_id = found.token.id
        actor = found.token.user_id or token_id
        error = Unauthorized(_why(found.token.id, is_live(found.token)))
    audit.refused(method, error, origin=origin_of(request), actor=actor, token_id=token_id,
                  machine_id=machine_id)  # fmt: skip


def _why(token_id: str, live: bool) -> str:
    if not live:
        return f"token {token_id} has expired"
    return f"the user of token {token_id} is disabled"
