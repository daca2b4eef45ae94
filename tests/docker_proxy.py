"""A TCP proxy to the docker engine's unix socket that a test controls: the provider reaches
the engine as a remote one (``tcp://127.0.0.1:<port>``), and the test cuts its connections
(an engine restart, a network blip, a proxy's timeout) or stops listening (the engine
unreachable for a while), then listens again on the same port.

It reads nothing but the start of each request it forwards (its method and path, kept per
connection: ``cut(matching=...)`` cuts only those whose latest request matches), so a
hijacked attach or a followed log passes through unchanged."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from types import TracebackType

from fleet.up.embedded import PortHold

ENGINE_SOCKET = "/var/run/docker.sock"
_METHODS = (b"GET ", b"POST ", b"DELETE ", b"HEAD ", b"PUT ")


@dataclass(eq=False)
class _Link:
    """One client connection and its own connection to the engine."""

    client: asyncio.StreamWriter
    engine: asyncio.StreamWriter
    request: bytes = b""  # the latest request line the client sent on it
    pumps: list[asyncio.Task[None]] = field(default_factory=list)

    def cut(self) -> None:
        # abort, not close: the peers see the connection go at once, as on an engine restart.
        self.client.transport.abort()
        self.engine.transport.abort()


class EngineProxy:
    """Async context manager: listening on 127.0.0.1 from the start, at a port the kernel gave,
    held (`PortHold`) while it lives: while it does not listen, connections are refused there
    and nothing else gets it."""

    def __init__(self, engine_socket: str = ENGINE_SOCKET) -> None:
        self._engine_socket = engine_socket
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        #: Every request line forwarded, in order (a positive signal for the tests).
        self.requests: list[bytes] = []
        self._hold = PortHold()
        self.port = self._hold.port

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    async def __aenter__(self) -> EngineProxy:
        await self.listen()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_listening()
        self._hold.close()

    async def listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )

    async def stop_listening(self) -> int:
        """No new connection is accepted (refused) and every open one is cut; how many."""
        if self._server is not None:
            self._server.close()
            self._server = None
        return self.cut()

    def cut(self, matching: bytes = b"") -> int:
        """Cut the open connections whose latest request contains ``matching`` (all of them
        by default), keeping on listening; how many."""
        links = [link for link in self._links if matching in link.request]
        for link in links:
            self._links.discard(link)
            link.cut()
        return len(links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(self._engine_socket)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        link.pumps = [
            asyncio.create_task(self._pump(reader, up_writer, link)),
            asyncio.create_task(self._pump(up_reader, writer, None)),
        ]
        await asyncio.gather(*link.pumps, return_exceptions=True)
        self._links.discard(link)
        link.cut()

    async def _pump(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, link: _Link | None
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await src.read(65536):
                if link is not None and data.startswith(_METHODS):
                    link.request = data.split(b"\r\n", 1)[0]
                    self.requests.append(link.request)
                dst.write(data)
                await dst.drain()
        # One side finished: the other learns it (a half close keeps a hijacked attach's
        # semantics: the engine sees its client's stdin end).
        with contextlib.suppress(OSError, RuntimeError):
            if dst.can_write_eof():
                dst.write_eof()
