"""``FleetClient``'s public transport (``fleet/client/transport.py``): a ``MockTransport`` handler
sees each request as the client sends it (the route, the bearer secret, the body) and its answers
are read as HTTP's are (a 401, a JSON-RPC error, a stream cut mid-way, a short download);
importing the client and making one loads no aiohttp, which only ``HttpTransport`` needs."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contracts.bus.events import MachineCreated, encode_event
from contracts.daemon.files import Uploaded
from contracts.errors import NotFound, TransferAborted, Unauthorized
from contracts.gateway.files import files_url
from contracts.gateway.rpc import INSTANCES_LIST
from contracts.rpc.jsonrpc import NoParams
from fleet.client import (
    ConnectionFailed,
    FleetClient,
    HttpTransport,
    MockTransport,
    Request,
    Response,
    StreamCut,
    Transport,
)

URL = "http://gateway.test"


def client(handler: MockTransport | None = None, token: str = "secret") -> FleetClient:  # noqa: S107
    return FleetClient(URL, token, transport=handler)


def test_both_transports_are_transports() -> None:
    assert isinstance(HttpTransport(URL), Transport)
    assert isinstance(MockTransport(lambda r: Response(404)), Transport)


async def test_a_call_reaches_the_handler_with_its_secret_and_body() -> None:
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        return Response.of_json(
            {"jsonrpc": "2.0", "id": request.json()["id"], "result": {"instances": []}}
        )

    async with client(MockTransport(handler)) as fleet:
        assert await fleet.list_instances() == []
    (request,) = seen
    assert (request.method, request.path, request.token) == ("POST", "/rpc", "secret")
    assert request.headers["content-type"] == "application/json"
    assert request.json()["method"] == "instances.list"


async def test_refusals_and_errors_are_read_as_over_http() -> None:
    async def handler(request: Request) -> Response:
        if request.token != "secret":
            return Response(401)
        error = {"code": NotFound.code, "message": "no such instance"}
        return Response.of_json({"jsonrpc": "2.0", "id": request.json()["id"], "error": error})

    async with client(MockTransport(handler), token="wrong") as fleet:
        with pytest.raises(Unauthorized, match="refused the access token"):
            await fleet.get_instance("i-1")
    async with client(MockTransport(handler)) as fleet:
        with pytest.raises(NotFound, match="no such instance"):
            await fleet.get_instance("i-1")


async def test_a_call_cut_after_it_was_sent_is_resent_only_when_asked() -> None:
    """The transport's ConnectionFailed is the one ``call`` retries on (``resend_cut``)."""
    ids: list[int] = []

    def handler(request: Request) -> Response:
        ids.append(request.json()["id"])
        if len(ids) % 2:  # every other request: cut after it went out
            raise ConnectionFailed("cut", sent=True)
        return Response.of_json({"jsonrpc": "2.0", "id": ids[-1], "result": {"instances": []}})

    async with client(MockTransport(handler)) as fleet:
        with pytest.raises(ConnectionFailed):
            await fleet.call(INSTANCES_LIST, NoParams())
        ids.clear()
        assert (await fleet.call(INSTANCES_LIST, NoParams(), resend_cut=True)).instances == []
    assert len(ids) == 2


async def test_a_call_answered_later_than_its_timeout_is_a_timeout_error() -> None:
    async def handler(request: Request) -> Response:
        await asyncio.Event().wait()  # never answers
        raise AssertionError

    async with client(MockTransport(handler)) as fleet:
        with pytest.raises(TimeoutError):
            await fleet.call(INSTANCES_LIST, NoParams(), timeout_s=0.05)


def _event(n: int) -> bytes:
    event = MachineCreated(event_id=f"e{n}", machine_id="m", instance_id="i", provider="local")
    return b"id: %d\ndata: %s\n\n" % (n, encode_event(event))


async def test_an_event_stream_cut_mid_way_is_resumed_after_the_last_event() -> None:
    queries: list[dict[str, str]] = []

    async def first() -> AsyncIterator[bytes]:
        yield _event(1)
        raise StreamCut("the gateway went away")

    async def second() -> AsyncIterator[bytes]:
        yield _event(2)
        yield b"event: caught-up\ndata: {}\n\n"

    def handler(request: Request) -> Response:
        assert (request.method, request.path, request.token) == ("GET", "/events", "secret")
        queries.append(dict(request.query))
        return Response(200, first() if len(queries) == 1 else second(),
                        headers={"Content-Type": "text/event-stream"})  # fmt: skip

    async with client(MockTransport(handler)) as fleet:
        got = [(seq, e.event_id) async for seq, e in fleet.events("m", follow=False)]
    assert got == [(1, "e1"), (2, "e2")]
    assert queries == [{"machineId": "m"}, {"machineId": "m", "since": "1"}]


async def test_an_upload_sends_the_file_and_checks_what_was_written(tmp_path: Path) -> None:
    local = tmp_path / "a.bin"
    local.write_bytes(b"x" * 3_000_000)

    def handler(request: Request) -> Response:
        assert (request.method, request.path) == ("PUT", files_url("m", "~/a.bin"))
        assert request.query == {"mode": "600"}
        digest = hashlib.sha256(request.body).hexdigest()
        written = Uploaded(path="a.bin", size=len(request.body), sha256=digest, mode=0o600)
        return Response.of_json(written)

    async with client(MockTransport(handler)) as fleet:
        done = await fleet.upload("m", local, "~/a.bin", mode=0o600)
    assert done.size == 3_000_000


async def test_a_short_or_cut_download_leaves_nothing_at_the_target(tmp_path: Path) -> None:
    async def cut() -> AsyncIterator[bytes]:
        yield b"abc"
        raise StreamCut("reset")

    answers = {
        "whole": Response(200, b"abcdef", headers={"X-Fleet-Mode": "640"}),
        "short": Response(200, b"abc", headers={"Content-Length": "6"}),
        "cut": Response(200, cut()),
    }
    fleet = client(MockTransport(lambda r: answers[r.path.rsplit("/", 1)[1]]))
    done = await fleet.download("m", "whole", tmp_path / "whole")
    assert (tmp_path / "whole").read_bytes() == b"abcdef"
    assert (done.size, done.mode) == (6, 0o640)
    for name in ("short", "cut"):
        with pytest.raises(TransferAborted):
            await fleet.download("m", name, tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whole"]


async def test_a_websocket_needs_the_http_transport() -> None:
    async with client(MockTransport(lambda r: Response(404))) as fleet:
        with pytest.raises(TypeError, match="needs an HttpTransport"):
            await fleet.websocket("/x")


PROBE = """
import asyncio, json, sys
import fleet.client.client
seen = ["aiohttp" in sys.modules]

async def main():
    async with fleet.client.client.FleetClient("http://127.0.0.1:9") as client:
        seen.append("aiohttp" in sys.modules)
        client.session  # what the first request opens
        seen.append("aiohttp" in sys.modules)

asyncio.run(main())
print(json.dumps(seen))
"""


def test_importing_the_client_and_making_one_loads_no_aiohttp_until_it_sends() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True,
                         text=True, timeout=60, check=True).stdout  # fmt: skip
    assert json.loads(out) == [False, False, True]
