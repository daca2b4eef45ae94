"""The daemon's local control server: HTTP on 127.0.0.1, a random port, two endpoints.

``GET /status`` answers the daemon's state; ``POST /stop`` stops it; ``POST /handover?pid=N``
asks it to hand over to the newer daemon N that is starting (daemon/supervision/takeover.py): it
stops
serving and leaves its background processes for N. Every request carries the
local secret (``Authorization: Bearer <~/.fleet/daemon.secret>``, a file only the machine's
user can read): any process on the host can reach a loopback port, not every one may stop the
daemon. Plain asyncio, not aiohttp: the daemon keeps aiohttp out of its memory (bench 5).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import http.client
import json
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

import structlog

from base import procinfo
from contracts.daemon.machine_files import CONTROL_SECRET_FILE

log = structlog.get_logger(__name__)

_MAX_HEAD = 8192
_REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized",
            404: "Not Found", 405: "Method Not Allowed"}  # fmt: skip

StatusFn = Callable[[], dict[str, Any]]
StopFn = Callable[[str], Awaitable[None] | None]
HandoverFn = Callable[[int], None]


def secret_path(home: Path) -> Path:
    return home / CONTROL_SECRET_FILE


def write_secret(home: Path) -> str:
    """A fresh secret for this daemon's life, in a 0600 file written atomically."""
    secret = secrets.token_urlsafe(32)
    path = secret_path(home)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    os.replace(tmp, path)
    return secret


class ControlServer:
    def __init__(self, home: Path, *, status: StatusFn, stop: StopFn, handover: HandoverFn) -> None:
        self._home = home
        self._status = status
        self._stop = stop
        self._handover = handover
        self._secret = ""
        self._server: asyncio.Server | None = None
        self.port: int | None = None

    async def __aenter__(self) -> ControlServer:
        self._secret = write_secret(self._home)
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("daemon.control_listening", port=self.port)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2)

    def park(self) -> None:
        """Stop listening for a pause (gVisor cannot checkpoint a listener the event loop
        watches: daemon/supervision/park.py); ``unpark`` listens on the same port again."""
        server, self._server = self._server, None
        if server is not None:
            server.close()

    async def unpark(self) -> None:
        if self._server is None and self.port is not None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body = await self._answer(reader)
            payload = json.dumps(body).encode()
            head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n")  # fmt: skip
            writer.write(head.encode() + payload)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away; nothing to answer
        finally:
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        if len(head) > _MAX_HEAD:
            return 400, {"error": "request head too large"}
        lines = head.decode("latin-1").split("\r\n")
        method, target, *_ = [*lines[0].split(" "), "", ""][:3]
        path, _, query = target.partition("?")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:]) if k
        }
        given = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not given or not hmac.compare_digest(given.encode(), self._secret.encode()):
            return 401, {"error": f"missing or wrong local secret (see ~/{CONTROL_SECRET_FILE})"}
        if path == "/status":
            return (200, self._status()) if method == "GET" else (405, {"error": "use GET"})
        if path == "/stop":
            if method != "POST":
                return 405, {"error": "use POST"}
            result = self._stop("stop requested on the control port")
            if result is not None:
                await result
            return 202, {"stopping": True}
        if path == "/handover":
            return self._answer_handover(method, query)
        return 404, {"error": f"no such endpoint {path}; try /status, /stop or /handover"}

    def _answer_handover(self, method: str, query: str) -> tuple[int, dict[str, Any]]:
        if method != "POST":
            return 405, {"error": "use POST"}
        raw = parse_qs(query).get("pid", [""])[-1]
        if not raw.isdigit() or not procinfo.is_alive(int(raw), None) or int(raw) == os.getpid():
            return 400, {"error": f"pid={raw!r}: the pid of the live daemon taking over"}
        self._handover(int(raw))
        return 202, {"handingOver": int(raw)}


class ControlUnavailable(Exception):
    pass


def control_request(home: Path, port: int, method: str, path: str, timeout_s: float = 5.0) -> Any:
    """Call a running daemon's control server (used by ``fleet-daemon status|stop``)."""
    try:
        secret = secret_path(home).read_text().strip()
    except OSError as exc:
        raise ControlUnavailable(f"cannot read the local secret: {exc}") from None
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request(method, path, headers={"Authorization": f"Bearer {secret}"})
        resp = conn.getresponse()
        body = json.loads(resp.read() or b"{}")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise ControlUnavailable(f"control port {port} did not answer: {exc}") from None
    finally:
        conn.close()
    if resp.status >= 400:
        raise ControlUnavailable(f"control port {port} answered {resp.status}: {body}")
    return body
