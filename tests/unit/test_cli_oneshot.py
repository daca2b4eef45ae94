"""The blocking path of `fleet machines list` and `exec` (fleet/cli/oneshot.py) against a
stand-in gateway on the loopback: each prints what the full way prints for the same answers
(the table, ``--json``, a command's output, its end and its error), leaves every other form to
the full way without sending anything, and its HTTP client (fleet/client/blocking.py) tells
what breaks. The same against a real stack: tests/integration/test_exec_stream.py."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from aiohttp import web

from contracts.gateway.sse import comment, frame
from contracts.gateway.wire_names import SSE_OUTPUT, SSE_RESULT
from contracts.models import Machine
from contracts.status import MachineStatus
from fleet.cli.entry import _run_client, parse
from fleet.cli.oneshot import WireView, run
from fleet.client import Broken, EventLines, EventTooLong, post
from tests.httpserve import cut_body, raw_serving, read_request, serving

M = "m-0123456789abcdef"
TOKEN = "secret"
_LONG_AGO = datetime.now(UTC) - timedelta(days=3)


def _machine(n: int, **fields: object) -> Machine:
    base: dict[str, object] = dict(id=f"m-{n:016x}", instance_id=f"i-{n:016x}", provider="local",
                                   status=MachineStatus.READY, status_reason="all checks passed",
                                   created_at=_LONG_AGO, updated_at=_LONG_AGO)  # fmt: skip
    return Machine(**(base | fields))  # type: ignore[arg-type]


MACHINES = [
    _machine(
        1,
        daemon_version="0.1.0",
        daemon_git_sha="abcdef0123",
        code_status="behind",
        update_available=True,
        host_id="host-1",
    ),
    _machine(
        2,
        runtime="gvisor",
        runtime_platform="ptrace",
        setup_warning="repo a: gone",
        daemon_version="0.1.0",
        code_status="ahead",
        status_reason="a\nsecond line",
    ),
    _machine(3, status=MachineStatus.FAILED, status_reason="köln ✓", daemon_version=None),
]


class Gateway:
    """Answers machines.list with ``MACHINES``, and a streamed exec with ``stream`` (the frames
    after the head); or a refusal (``refuse``: its status). Counts the requests."""

    def __init__(self) -> None:
        self.requests: list[dict[str, object]] = []
        self.stream: list[bytes] = []
        self.refuse: int | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/rpc", self._rpc)
        app.router.add_post("/rpc/stream", self._rpc_stream)
        return app

    async def _call(self, request: web.Request) -> dict[str, object] | None:
        call: dict[str, object] = await request.json()
        self.requests.append(call)
        if self.refuse or request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return None
        return call

    async def _rpc(self, request: web.Request) -> web.Response:
        if (call := await self._call(request)) is None:
            return web.Response(status=self.refuse or 401)
        result = msgspec.to_builtins({"machines": MACHINES})
        return web.json_response({"jsonrpc": "2.0", "id": call["id"], "result": result},
                                 dumps=lambda o: msgspec.json.encode(o).decode())  # fmt: skip

    async def _rpc_stream(self, request: web.Request) -> web.StreamResponse:
        if await self._call(request) is None:
            return web.Response(status=self.refuse or 401)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for part in self.stream:
            await resp.write(part)
        await resp.write_eof()
        return resp


@contextlib.asynccontextmanager
async def gateway() -> AsyncIterator[tuple[Gateway, str]]:
    g = Gateway()
    async with serving(g.app()) as url:
        yield g, url


@contextlib.contextmanager
def _captured() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield out, err


async def _both(url: str, argv: list[str]) -> tuple[tuple[object, str, str], ...]:
    """(exit code, stdout, stderr) of the blocking path, then of the full way."""
    full = ["--url", url, "--token", TOKEN, *argv]
    with _captured() as (out, err):
        code = await asyncio.to_thread(run, full)
    blocking = code, out.getvalue(), err.getvalue()
    with _captured() as (out, err):
        code = await _run_client(parse(full))
    return blocking, (code, out.getvalue(), err.getvalue())


@pytest.mark.parametrize("argv", [
    ["machines", "list"], ["--json", "machines", "list"], ["machines", "list", "--json"],
    ["machines", "list", "--instance", "i-0000000000000001"],
])  # fmt: skip
async def test_list_prints_what_the_full_way_prints(argv: list[str]) -> None:
    async with gateway() as (g, url):
        blocking, full = await _both(url, argv)
    assert blocking == full
    assert blocking[0] == 0
    assert "m-0000000000000003" in blocking[1]
    assert g.requests[0]["params"] == g.requests[1]["params"]


_OUT = [frame(SSE_OUTPUT, b'{"seq":0,"stream":"stdout","data":"out \\u00e9\\n"}'),
        comment("keepalive"),
        frame(SSE_OUTPUT, b'{"seq":1,"stream":"stderr","data":"err\\n"}')]  # fmt: skip
ENDED = [*_OUT, frame(SSE_RESULT, b'{"jsonrpc":"2.0","id":1,"result":{"exitCode":3,'
                b'"stdout":"out \\u00e9\\n","stderr":"err\\n","timedOut":true,'
                b'"truncated":true}}')]  # fmt: skip
FAILED = [*_OUT, frame(SSE_RESULT, b'{"jsonrpc":"2.0","id":1,"error":{"code":1502,'
                 b'"message":"machine m-0123456789abcdef stopped"}}')]  # fmt: skip
KILLED = [frame(SSE_RESULT, b'{"jsonrpc":"2.0","id":1,"result":{"exitCode":-9,'
          b'"stdout":"","stderr":""}}')]  # fmt: skip


#: Answers of other shapes: decoded the full way's way, in its words and codes.
ODD_CODE = [frame(SSE_RESULT, b'{"jsonrpc":"2.0","id":1,"error":{"code":4242}}')]
NO_RESULT = [frame(SSE_RESULT, b'{"jsonrpc":"2.0","id":1,"result":null}')]
BAD_FLAG = [frame(SSE_RESULT, b'{"jsonrpc":"2.0","id":1,"result":{"exitCode":0,"stdout":"",'
            b'"stderr":"","timedOut":"yes"}}')]  # fmt: skip
CASES = [(ENDED, 3), (FAILED, 4), (KILLED, 1), (_OUT, 4), (ODD_CODE, 4), (NO_RESULT, 4),
         (BAD_FLAG, 4)]  # fmt: skip


@pytest.mark.parametrize(("stream", "code"), CASES,
                         ids=["ended", "failed", "killed", "unended", "odd-code", "no-result",
                              "bad-flag"])  # fmt: skip
async def test_exec_prints_and_ends_as_the_full_way(stream: list[bytes], code: int) -> None:
    async with gateway() as (g, url):
        g.stream = stream
        argv = ["machines", "exec", M, "--cwd", "src", "--timeout", "9", "--", "sh", "-c", "x"]
        blocking, full = await _both(url, argv)
    assert blocking == full
    assert blocking[0] == code
    assert g.requests[0]["params"] == g.requests[1]["params"]


DECLINED = [
    ["machines", "list", "--help"],
    ["machines", "get", M],
    ["instances", "list"],
    ["machines", "list", "--bogus"],
    ["machines", "list", "--instance", "demo"],  # a name: the full way finds its id
    ["--json", "machines", "exec", M, "--", "true"],
    ["machines", "exec", M, "--json", "--", "true"],
    ["machines", "exec", M, "--user", "root", "--", "true"],
    ["machines", "exec", M],  # no command: the full way's usage error
    ["machines", "exec", "m-xyz", "--", "true"],  # not an id: the full way's usage error
    *(["machines", "exec", M, "--timeout", t, "--", "true"] for t in ("-50", "nan", "inf", "1e12")),
    ["--url", "", "machines", "list"],  # not a URL: the full way's usage error
]


@pytest.mark.parametrize("argv", DECLINED)
async def test_other_forms_go_the_full_way_before_anything_is_sent(argv: list[str]) -> None:
    async with gateway() as (g, url):
        assert await asyncio.to_thread(run, ["--url", url, *argv]) is None
    assert g.requests == []
    assert run(["--url", "ftp://example.com", "machines", "list"]) is None


@pytest.mark.parametrize("argv", [["machines", "list"], ["machines", "exec", M, "--", "true"]])
async def test_a_refusal_before_anything_ran_is_left_to_the_full_way(argv: list[str]) -> None:
    """Refused (a wrong token, a budget spent): nothing ran, so the full way asks again and
    says why as it always did; nobody listening, the same."""
    async with gateway() as (g, url):
        g.refuse = 429
        assert await asyncio.to_thread(run, ["--url", url, "--token", "wrong", *argv]) is None
        assert len(g.requests) == 1
    assert await asyncio.to_thread(run, ["--url", url, *argv]) is None  # its port is closed now


def test_a_wire_view_reads_the_models_names() -> None:
    doc = msgspec.to_builtins(MACHINES[1])
    view = WireView(doc)
    assert (view.instance_id, view.runtime_platform, view.created_at, view.paused_bytes) == (
        MACHINES[1].instance_id, "ptrace", MACHINES[1].created_at, None)  # fmt: skip


def test_event_lines_are_the_events_with_their_ids() -> None:
    lines = EventLines()
    said = [lines.feed(raw) for raw in (b": hi\n", b"\n", b"event: x\r\n", b"id: 7\n",
                                        b"data: a\n", b"data:b\n", b"\n")]  # fmt: skip
    assert said == [None, (b"message", None), None, None, None, None, (b"x", b"a\nb")]
    assert lines.id == b"7"
    small = EventLines(max_bytes=8)
    assert small.feed(b"data: 1234\n") is None
    with pytest.raises(EventTooLong):
        small.feed(b"data: 5678\n")  # 10 bytes with the line ends


async def test_the_blocking_client_tells_what_broke() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 4096)  # no line end, ever
        await writer.drain()
        await reader.read()  # until the client leaves

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n")
        while not reader.at_eof():  # a keepalive each 20 ms: no read waits long
            writer.write(b": keepalive\n\n")
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reader.read(), 0.02)

    def read(url: str, *, lines: bool = False, timeout_s: float = 10) -> object:
        with post(url, "/", {}, b"{}", timeout_s) as answer:
            return list(answer.lines(1024)) if lines else answer.read(1 << 20)

    for handler in (cut_body, endless):
        async with raw_serving(handler) as url:
            with pytest.raises(Broken, match=r"broke off|longer than 1024") as broke:
                await asyncio.to_thread(read, url, lines=handler is endless)
            assert broke.value.sent
            if handler is endless:
                with pytest.raises(TimeoutError):
                    await asyncio.to_thread(read, url, timeout_s=0.2)
    with pytest.raises(Broken) as refused:
        await asyncio.to_thread(read, url)
    assert not refused.value.sent
    async with raw_serving(trickle) as url:
        with pytest.raises(TimeoutError):  # the whole call's deadline, however often data came
            await asyncio.to_thread(read, url, lines=True, timeout_s=0.5)


PROBE = """
import sys
from fleet.cli.entry import main
try:
    main()
except SystemExit as exc:
    print(exc.code, sorted({"asyncio", "msgspec", "contracts.models"} & set(sys.modules)))
"""


async def test_a_blocking_call_imports_neither_asyncio_nor_msgspec() -> None:
    async with gateway() as (_, url):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", PROBE, "--url", url, "--token", TOKEN, "machines", "list",
            stdout=subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert out.decode().splitlines()[-1] == "0 []"
    assert json.dumps(out.decode()).count("m-0000000000000001") == 1


async def test_an_exec_cut_midway_is_said_alike_both_ways() -> None:
    """Its command ran: neither way asks again; each says the answer broke off, exit 3."""

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        part = frame(SSE_OUTPUT, b'{"seq":0,"stream":"stdout","data":"half"}')
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        writer.write(head + b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n" % (len(part), part))
        await writer.drain()

    async with raw_serving(cut) as url:
        blocking, full = await _both(url, ["machines", "exec", M, "--", "true"])
    for code, out, err in (blocking, full):
        assert (code, out) == (3, "half"), (blocking, full)
        assert err.startswith("fleet: the answer broke off"), (blocking, full)
