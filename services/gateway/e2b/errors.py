"""fleetd's errors as E2B's SDKs expect them, from the one error table: an error's HTTP status
is its kind's (``contracts.errors``), and so is the Connect code an in-sandbox call answers.

A REST answer is ``{"code": <status>, "message": ...}`` (the JavaScript SDK reads the status
from ``code``), with ``Retry-After`` for a budget's refusal and ``Should-Retry: false`` on any
other error: the Python SDK would otherwise retry a 502, 503 or 504 itself.
"""

from __future__ import annotations

import msgspec
from aiohttp import web

from contracts.e2b.control import ApiError
from contracts.errors import FleetError, NotSupported, RateLimited

#: A Connect error code by HTTP status (connectrpc.com/docs/protocol: the codes' HTTP mapping).
_CONNECT = {400: "invalid_argument", 401: "unauthenticated", 403: "permission_denied",
            404: "not_found", 409: "failed_precondition", 413: "resource_exhausted",
            422: "invalid_argument", 429: "resource_exhausted", 499: "canceled",
            501: "unimplemented", 502: "unavailable", 503: "unavailable",
            504: "deadline_exceeded"}  # fmt: skip
#: The HTTP status of a Connect unary error, by code (the same table read back).
CONNECT_STATUS = {code: status for status, code in sorted(_CONNECT.items(), reverse=True)}
CONNECT_STATUS["internal"] = 500
#: No fleetd error stands for it (makeDir answers a directory there already as a result): the
#: E2B front raises it itself, with Connect's status for it.
CONNECT_STATUS["already_exists"] = 409


def connect_code(exc: FleetError) -> str:
    return _CONNECT.get(exc.http_status, "internal")


def unsupported(what: str, why: str) -> NotSupported:
    """A call fleetd's E2B front does not carry out, named, and why (docs/e2b.md)."""
    return NotSupported(f"{what} is not supported by fleetd's E2B front: {why}")


def rest_error(exc: FleetError) -> web.Response:
    """A control API answer for ``exc``."""
    headers = {"Should-Retry": "false"}
    if isinstance(exc, RateLimited) and exc.data:
        headers = {"Retry-After": str(exc.data.get("retryAfterS", 1))}
    body = msgspec.json.encode(ApiError(code=exc.http_status, message=str(exc)))
    return web.Response(status=exc.http_status, body=body, content_type="application/json",
                        headers=headers)  # fmt: skip
