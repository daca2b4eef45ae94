"""No input makes the gateway answer 5xx or leak a traceback, and it stays healthy.

Property-based (Hypothesis) over what a hostile client controls: ``POST /rpc`` bodies (bytes,
JSON, JSON-RPC envelopes for every gateway method with params of the right names and hostile
values), ``GET /events`` query parameters and ``Last-Event-ID``, and raw header bytes (not
UTF-8, control characters). Known classes of hostile input are seeded explicitly (``@example``):
deep nesting, non-ASCII digits, ids with a trailing newline, absurdly large numbers, non-UTF-8
header bytes. Budget: well under 60 s on a loaded machine (the example counts below).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
from hypothesis import HealthCheck, example, given, settings, strategies as st

from contracts.gateway.rpc import GATEWAY_METHODS
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FIELDS = {
    s.name: sorted({f.encode_name for f in msgspec.structs.fields(s.params)} | {"x"})
    for s in GATEWAY_METHODS
}
HOSTILE_TEXT = st.sampled_from(
    ["m-0000000000000000\n", "i-0000000000000000\n", "١٢٣", "²", "9" * 400, "-1", "", "\x00",
     "../../etc/passwd", "-oProxyCommand=x", "\ud800", "1e999"]
)  # fmt: skip
HOSTILE_NUMBER = st.sampled_from([10**400, -(10**400), 2**64, 1e308, -0.0, 0, -1])
SCALAR = st.none() | st.booleans() | st.integers() | HOSTILE_NUMBER | st.text() | HOSTILE_TEXT
JSON = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def envelopes(draw: st.DrawFn) -> Any:
    method = draw(st.sampled_from(sorted(FIELDS)) | st.text(max_size=20))
    names = FIELDS.get(method, ["x"])
    params = draw(st.dictionaries(st.sampled_from(names), JSON, max_size=len(names)) | JSON)
    req: dict[str, Any] = {"jsonrpc": draw(st.sampled_from(["2.0", "1.0", 2])), "method": method}
    req["params"] = params
    if draw(st.booleans()):
        req["id"] = draw(st.integers() | st.text(max_size=8) | HOSTILE_NUMBER | st.none())
    return req


def encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


RPC_BODIES = (
    st.binary(max_size=300)
    | JSON.map(encode)
    | envelopes().map(encode)
    | st.lists(envelopes(), min_size=1, max_size=5).map(encode)
)


async def raw_http(port: int, request: bytes) -> tuple[int, bytes]:
    """Send ``request`` as is; the status and body of the answer (0 when none came)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
        return int(head.split(b" ", 2)[1]), body
    finally:
        writer.close()


async def healthy(port: int) -> None:
    status, body = await raw_http(
        port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 200, body


def check(status: int, body: bytes) -> None:
    assert 0 < status < 500, (status, body[:300])
    assert b"Traceback" not in body
    assert b'File "' not in body


def post_rpc(body: bytes, auth: bytes = b"Bearer " + ADMIN_TOKEN.encode()) -> bytes:
    return (b"POST /rpc HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: "
            b"application/json\r\nAuthorization: " + auth + b"\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)  # fmt: skip


@FUZZ
@given(body=RPC_BODIES)
@example(body=b"[" * 100_000 + b"]" * 100_000)
@example(body=b'{"jsonrpc":"2.0","id":1,"method":"machines.get","params":{"machineId":' * 5000)
@example(body=encode({"jsonrpc": "2.0", "id": 1, "method": "machines.get",
                      "params": {"machineId": "m-0000000000000000\n"}}))  # fmt: skip
@example(body=b'{"jsonrpc":"2.0","id":1,"method":"machines.process.logs","params":'
               b'{"machineId":"m-0000000000000000","pid":' + b"9" * 5000 + b"}}")  # fmt: skip
@example(body=b'{"jsonrpc":"2.0","id":"1\\n","method":"rpc.discover"}')
async def test_rpc_bodies(stack: FleetClient, settings: Settings, body: bytes) -> None:
    check(*await raw_http(settings.port, post_rpc(body)))
    await healthy(settings.port)


EVENTS_VALUE = st.text(max_size=30) | HOSTILE_TEXT | st.integers().map(str)


@FUZZ
@given(machine=st.none() | EVENTS_VALUE, since=st.none() | EVENTS_VALUE,
       last=st.none() | EVENTS_VALUE, ticket=st.none() | EVENTS_VALUE)  # fmt: skip
@example(machine=None, since="²", last=None, ticket=None)
@example(machine=None, since="١٢", last=None, ticket=None)
@example(machine=None, since="9" * 40, last=None, ticket=None)
@example(machine="m-0000000000000000\n", since=None, last=None, ticket=None)
@example(machine=None, since=None, last="18446744073709551616", ticket="evt_\n")
async def test_events_parameters(
    stack: FleetClient,
    settings: Settings,
    machine: str | None,
    since: str | None,
    last: str | None,
    ticket: str | None,
) -> None:
    query = {k: v for k, v in {"machineId": machine, "since": since, "ticket": ticket}.items()
             if v is not None}  # fmt: skip
    headers = {} if ticket else {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    if last is not None:
        headers["Last-Event-ID"] = last
    try:
        async with (
            asyncio.timeout(10),
            stack.session.get(f"{stack.url}/events", params=query, headers=headers) as r,
        ):
            body = await r.content.readuntil(b"\n\n") if r.status == 200 else await r.read()
            check(r.status, body)
    except ValueError:
        pass  # the client refused to send it (e.g. a header with a newline): nothing to test


@FUZZ
@given(value=st.binary(max_size=80), name=st.sampled_from([b"Authorization", b"Last-Event-ID",
                                                          b"Content-Type", b"X-Any"]))  # fmt: skip
@example(value=b"Bearer \xff\xfe\xfd", name=b"Authorization")
@example(value=b"Bearer fleet_\xc3\x28", name=b"Authorization")
@example(value=b"\xff", name=b"Last-Event-ID")
async def test_header_bytes(
    stack: FleetClient, settings: Settings, value: bytes, name: bytes
) -> None:
    value = value.replace(b"\r", b"").replace(b"\n", b"")
    for path in (b"/rpc", b"/events"):
        method = b"POST" if path == b"/rpc" else b"GET"
        req = (method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               + name + b": " + value + b"\r\nContent-Length: 2\r\n\r\n{}")  # fmt: skip
        status, body = await raw_http(settings.port, req)
        if status != 200 or path == b"/rpc":
            check(status, body)
    await healthy(settings.port)
