"""``StreamTransport`` (``fleet/client/transport_streams.py``), the CLI's, against a real HTTP
server on the loopback, as ``HttpTransport`` is: the same calls give the same answers (a sized
body, a chunked stream read line by line, a chunked upload, a refusal, an error header); what
breaks is told as the client's errors (no server: ``ConnectionFailed``; a body cut short:
``StreamCut``; too slow: ``TimeoutError``). And the CLI's start imports none of the heavy
modules a command does without."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from contracts.errors import ERROR_HEADER, Unauthorized
from fleet.client import ConnectionFailed, FleetClient, HttpTransport, StreamCut, StreamTransport
from fleet.client.transport import Timeout
from tests.httpserve import cut_body, raw_serving, serving

TRANSPORTS = [StreamTransport, HttpTransport]


def _app() -> web.Application:
    async def rpc(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer secret":
            return web.Response(status=401)
        call = await request.json()
        return web.json_response({"jsonrpc": "2.0", "id": call["id"], "result": {"instances": []}})

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)  # no length: chunked, as the gateway's streams are
        for n in range(3):
            await resp.write(b"data: %d\n\n" % n)
            await asyncio.sleep(0.01)
        await resp.write_eof()
        return resp

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {ERROR_HEADER: "1404", "X-Query": request.query.get("q", ""),
                   "X-Agent": request.headers.get("User-Agent", "")}  # fmt: skip
        return web.Response(body=body, status=404, headers=headers)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response()

    app = web.Application()
    app.router.add_post("/rpc", rpc)
    app.router.add_post("/stream", stream)
    app.router.add_post("/echo", echo)
    app.router.add_get("/slow", slow)
    return app


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_call_and_a_refusal_as_over_aiohttp(kind: type[HttpTransport]) -> None:
    async with serving(_app()) as url:
        async with FleetClient(url, "secret", transport=kind(url)) as fleet:
            assert await fleet.list_instances() == []
        async with FleetClient(url, "wrong", transport=kind(url)) as fleet:
            with pytest.raises(Unauthorized, match="refused the access token"):
                await fleet.list_instances()


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_chunked_stream_is_read_line_by_line(kind: type[HttpTransport]) -> None:
    async with serving(_app()) as url:
        transport = kind(url)
        async with transport.request("POST", "/stream", headers={}, body=b"{}") as resp:
            assert (resp.status, resp.content_type) == (200, "text/event-stream")
            lines = [await resp.content.readuntil(b"\n") for _ in range(7)]
        await transport.aclose()
    assert lines == [b"data: 0\n", b"\n", b"data: 1\n", b"\n", b"data: 2\n", b"\n", b""]


async def _chunks() -> AsyncIterator[bytes]:
    for n in range(50):
        yield b"%d," % n * 1000


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_an_upload_in_chunks_and_its_answers_headers(
    kind: type[HttpTransport],
) -> None:
    async with serving(_app()) as url:
        transport = kind(url)
        async with transport.request(
            "POST", "/echo", headers={}, body=_chunks(), query={"q": "a b"}
        ) as resp:
            got = b"".join([c async for c in resp.content.iter_chunked(4096)])
            assert resp.status == 404
            assert resp.headers.get(ERROR_HEADER.lower()) == "1404"
            assert resp.headers.get("x-query") == "a b"
            agent = "fleetd-client/" if kind is StreamTransport else "Python/"  # aiohttp's
            assert (resp.headers.get("x-agent") or "").startswith(agent)
            assert resp.content_length == len(got)
        await transport.aclose()
    assert got == b"".join([c async for c in _chunks()])


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_an_upload_of_a_known_size_goes_by_its_length(kind: type[HttpTransport]) -> None:
    """As the client's upload sends a file: its Content-Length given, its chunks as read (a
    chunked framing beside it is a request aiohttp's server refuses)."""
    whole = b"".join([c async for c in _chunks()])
    async with serving(_app()) as url:
        transport = kind(url)
        async with transport.request("POST", "/echo", headers={"Content-Length": str(len(whole))},
                                     body=_chunks()) as resp:  # fmt: skip
            assert resp.status == 404
            assert await resp.read() == whole
        await transport.aclose()


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_an_answer_before_the_whole_upload_is_the_requests(kind: type[HttpTransport]) -> None:
    """A server that refuses an upload answers and closes before reading its body (the
    gateway, for a stopped machine): the caller gets that answer, not a broken send."""

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 7\r\n"
                     b"X-Fleet-Error: 1503\r\nConnection: close\r\n\r\nstopped")  # fmt: skip
        await writer.drain()
        writer.close()

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(4096):  # 256 MiB: more than any socket buffer holds unread
            yield b"x" * 65536

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        transport = kind(url)
        async with transport.request("PUT", "/files", headers={}, body=endless()) as resp:
            assert (resp.status, resp.headers.get("x-fleet-error")) == (503, "1503")
            assert await resp.read() == b"stopped"
        await transport.aclose()


async def test_no_server_a_cut_body_and_a_slow_answer_are_the_clients_errors() -> None:
    async with raw_serving(cut_body) as url:
        transport = StreamTransport(url)
        async with transport.request("GET", "/", headers={}) as resp:
            with pytest.raises(StreamCut):
                await resp.read()
    with pytest.raises(ConnectionFailed, match="cannot reach fleetd"):
        async with transport.request("GET", "/", headers={}):
            pass
    async with serving(_app()) as url:
        with pytest.raises(TimeoutError):
            async with StreamTransport(url).request(
                "GET", "/slow", headers={}, timeout=Timeout(total=0.2)
            ) as resp:
                await resp.read()


#: What `fleet machines list` and `exec` do without at start: aiohttp (and what it brings),
#: the services' bus and store, the logs' configuration, the console's and codemode's parts.
HEAVY = ("aiohttp", "yarl", "multidict", "attr", "aiodns", "nats", "redis", "structlog",
         "cryptography", "jwt", "prometheus_client", "mcp", "controlplane", "providers",
         "services", "daemon")  # fmt: skip
_PROBE = """
import sys
from fleet.cli.entry import main
try:
    main(["--url", "http://127.0.0.1:9", *sys.argv[1:]])  # nothing listens: exit 3
except SystemExit as exc:
    assert exc.code == 3, exc.code
print(" ".join(sorted({m.split(".")[0] for m in sys.modules})))
"""


@pytest.mark.parametrize(
    "argv", [["machines", "list"], ["machines", "exec", "m-0123456789abcdef", "--", "true"]]
)
def test_the_clis_start_imports_none_of_the_heavy_modules(argv: list[str]) -> None:
    """Up to the command's request (to a port where nothing listens): everything the command
    imports before it sends is loaded by then."""
    out = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True,
                         timeout=60, check=True)  # fmt: skip
    loaded = set(out.stdout.split())
    assert "fleet" in loaded
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
