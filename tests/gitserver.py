"""A real git smart-HTTP server for tests: `git http-backend` behind Basic auth (aiohttp)."""

from __future__ import annotations

import asyncio
import base64
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from aiohttp import web

from tests.httpserve import start_site


@dataclass
class GitHttpServer:
    """Serves the repositories under ``root`` at http://127.0.0.1:<port>/<name>.git, to
    ``username``/``password`` only (None: to anyone, as a public repo is: the host's checkout
    for an environment's build takes no credentials). ``seen`` records each request's path and
    query."""

    root: Path
    username: str | None
    password: str | None
    #: The port it listens on: one the kernel gives, once entered.
    port: int = 0
    #: Where it listens (a docker machine reaches the host on its network's gateway only).
    host: str = "127.0.0.1"
    seen: list[str] = field(default_factory=list)
    #: Served over HTTPS with this context (None: plain HTTP).
    tls: ssl.SSLContext | None = None
    #: Each request's Authorization header (None: none sent).
    authorizations: list[str | None] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    def url(self, name: str) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}/{name}"

    async def _handle(self, request: web.Request) -> web.Response:
        self.seen.append(request.path_qs)
        self.authorizations.append(request.headers.get("Authorization"))
        if self.username is not None:
            expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            if request.headers.get("Authorization") != f"Basic {expected}":
                return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="git"'})
        env = {
            "GIT_PROJECT_ROOT": str(self.root), "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": request.method, "PATH_INFO": request.path,
            "QUERY_STRING": request.query_string, "REMOTE_USER": self.username or "",
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "HTTP_CONTENT_ENCODING": request.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
        }  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            "git", "http-backend", env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate(await request.read())
        head, _, body = out.partition(b"\r\n\r\n")
        status, headers = 200, {}
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers[name] = value.strip()
        return web.Response(status=status, body=body, headers=headers)

    async def __aenter__(self) -> GitHttpServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self.port = await start_site(self._runner, self.host, self.tls)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
