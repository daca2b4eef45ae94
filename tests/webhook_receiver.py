"""A webhook receiver on this host for the tests: an aiohttp server on 127.0.0.1 that keeps
every request it gets and answers as told (a status per request in turn, then 200; or holds
its answers until released), each request checked with the Standard Webhooks reference
verifier (``standardwebhooks``, not fleetd's own code)."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def type(self) -> str:
        return str(self.payload["type"])

    @property
    def machine_id(self) -> str | None:
        data = self.payload["data"]
        return data.get("machineId") if isinstance(data, dict) else None

    def verified(self, secret: str) -> dict[str, Any]:
        """The payload as the reference verifier reads it (it raises if the signature, or the
        timestamp's tolerance, fails)."""
        return dict(Webhook(secret).verify(self.body, self.headers))


class Receiver:
    def __init__(self) -> None:
        self.got: list[Received] = []
        #: The statuses of the next answers, in turn (then 200).
        self.answers: deque[int] = deque()
        #: While cleared, requests are kept waiting for an answer.
        self.open = asyncio.Event()
        self.open.set()
        self._arrived = asyncio.Condition()
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        got = Received({k.lower(): v for k, v in request.headers.items()}, await request.read())
        async with self._arrived:
            self.got.append(got)
            self._arrived.notify_all()
        await self.open.wait()
        return web.Response(status=self.answers.popleft() if self.answers else 200)

    async def until(self, done: Callable[[list[Received]], bool], timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: done(self.got))

    def of(self, machine_id: str) -> list[Received]:
        return [r for r in self.got if r.machine_id == machine_id]


@asynccontextmanager
async def receiver(path: str = "/hook") -> AsyncIterator[Receiver]:
    r = Receiver()
    app = web.Application()
    app.router.add_post(path, r._handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    r.url = f"http://127.0.0.1:{port}{path}"
    try:
        yield r
    finally:
        r.open.set()
        await runner.cleanup()
