"""The gateway's HTTP surface, spoken to with a plain HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from typing import Any

import aiohttp
import pytest

from contracts.errors import ERRORS
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN
from tests.schemas import openrpc_validator, problems

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def post(
    settings: Settings, body: bytes | str, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{settings.port}/rpc"
    data = io.BytesIO(body.encode() if isinstance(body, str) else body)
    async with aiohttp.ClientSession() as s, s.post(url, data=data, headers=headers) as r:
        text = await r.text()
        return r.status, json.loads(text) if text else None


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {ADMIN_TOKEN}"}]
)
async def test_missing_or_bad_token_is_401(
    stack: FleetClient, settings: Settings, headers: dict[str, str]
) -> None:
    status, body = await post(
        settings, '{"jsonrpc":"2.0","id":1,"method":"instances.list"}', headers
    )
    assert status == 401
    assert body["error"]["code"] == 1001
    assert await stack.list_instances() == []  # and the real token still works


async def test_rpc_discover_needs_no_token_and_nothing_else_rides_on_it(
    stack: FleetClient, settings: Settings
) -> None:
    for params in ("", ',"params":[]', ',"params":{}'):
        body = '{"jsonrpc":"2.0","id":7,"method":"rpc.discover"' + params + "}"
        status, answer = await post(settings, body)
        assert status == 200, answer
        assert answer["result"] == await stack.discover()
    # What a hostile client might try so that something else runs without a token:
    tricks = [
        '[{"jsonrpc":"2.0","id":1,"method":"rpc.discover"},'
        '{"jsonrpc":"2.0","id":2,"method":"instances.create","params":{"name":"x"}}]',
        '{"jsonrpc":"2.0","id":1,"method":"rpc.discover","method":"instances.create",'
        '"params":{"name":"x"}}',
        '{"jsonrpc":"2.0","id":1,"method":"instances.create","method":"rpc.discover",'
        '"params":{"name":"x"}}',
        '{"jsonrpc":"2.0","method":"instances.create","params":{"name":"x"}}',
    ]
    for body in tricks:
        status, answer = await post(settings, body, {"Authorization": "Bearer wrong"})
        assert status in (200, 401), (body, status)
        assert "result" not in json.dumps(answer) or answer["result"].get("openrpc"), body
    assert await stack.list_instances() == []  # none of them created anything


@pytest.mark.parametrize("headers", [{}, AUTH], ids=["no token", "token"])
async def test_every_body_that_is_no_request_gets_its_json_rpc_error_never_a_500(
    stack: FleetClient, settings: Settings, headers: dict[str, str]
) -> None:
    """Nested deeper than the interpreter's stack, not JSON, not a request: -32700 or -32600,
    with a token or without one (a parse error is about the body, whoever sent it)."""
    deep = 10_000
    bodies = {
        '{"a":' * deep + "1" + "}" * deep: -32700,
        "[" * deep + "]" * deep: -32700,
        '{"jsonrpc":"2.0","id":1,"method":"rpc.discover","params":' + "[" * deep: -32700,
        "not json": -32700,
        "{}": -32600,
        '{"jsonrpc":"2.0","id":1}': -32600,
    }
    for body, code in bodies.items():
        status, answer = await post(settings, body, headers)
        assert status == ERRORS[code].http_status, (body[:20], status, answer)
        assert answer["error"]["code"] == code, body[:20]
    status, _ = await post(settings, '{"jsonrpc":"2.0","id":1,"method":"instances.list"}')
    assert status == 401  # a request of a method that needs a token still needs one


async def test_empty_params_array_is_accepted(stack: FleetClient, settings: Settings) -> None:
    for method in ("instances.list", "tokens.list", "machines.list", "env.list"):
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": []})
        status, answer = await post(settings, body, AUTH)
        assert status == 200
        assert "result" in answer, (method, answer)
    body = '{"jsonrpc":"2.0","id":1,"method":"machines.get","params":[]}'
    _, answer = await post(settings, body, AUTH)
    assert answer["error"]["data"]["field"] == "$.machineId"


async def test_errors_have_their_codes(stack: FleetClient, settings: Settings) -> None:
    # One through the real gateway; every error is tests/fast/test_gateway_rpc_errors.py's.
    body = (
        '{"jsonrpc":"2.0","id":1,"method":"machines.get",'
        '"params":{"machineId":"m-0000000000000000"}}'
    )
    code = 1004  # not found: the store asked, a status other than 400
    status, answer = await post(settings, body, AUTH)
    assert status == ERRORS[code].http_status  # the error kind's status, as on every route
    assert answer["error"]["code"] == code
    assert answer["error"]["message"]


async def test_invalid_params_names_the_field(stack: FleetClient, settings: Settings) -> None:
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "env.set",
        "params": {"name": "BAD-NAME", "value": "x"},
    }
    _, answer = await post(settings, json.dumps(body), AUTH)
    assert answer["id"] == 7
    assert answer["error"]["code"] == -32602
    assert answer["error"]["data"] == {"field": "$.name"}
    # and nothing was stored
    assert await stack.list_env() == []


async def test_oversized_body_is_refused_with_413(stack: FleetClient, settings: Settings) -> None:
    big = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "instances.create",
            "params": {"name": "x" * (settings.max_body_bytes + 10)},
        }
    )
    status, answer = await post(settings, big, AUTH)
    assert status == 413
    assert answer["error"]["code"] == 1013
    assert await stack.list_instances() == []


async def test_notifications_and_batches(stack: FleetClient, settings: Settings) -> None:
    status, answer = await post(
        settings, '{"jsonrpc":"2.0","method":"instances.create","params":{"name":"n"}}', AUTH
    )
    assert (status, answer) == (204, None)
    batch = json.dumps(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "instances.list"},
            {"jsonrpc": "2.0", "id": 2, "method": "nope"},
            {"jsonrpc": "2.0", "method": "instances.create", "params": {"name": "quiet"}},
        ]
    )
    status, answers = await post(settings, batch, AUTH)
    assert status == 200
    assert [a["id"] for a in answers] == [1, 2]
    assert answers[0]["result"]["instances"][0]["name"] == "n"
    assert answers[1]["error"]["code"] == -32601


async def test_healthz_and_discover(stack: FleetClient, settings: Settings) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{settings.port}/healthz") as r:
            assert (r.status, await r.json()) == (200, {"ok": True})
        async with s.get(f"http://127.0.0.1:{settings.port}/") as r:
            assert r.status == 200
            assert "fleetd" in await r.text()
    doc = await stack.discover()
    names = {m["name"] for m in doc["methods"]}
    assert {"machines.create", "env.set", "repos.add", "rpc.discover"} <= names
    assert problems(openrpc_validator(), doc) == []  # the live document, as served


async def test_events_reject_bad_query_and_resume_after_an_id(
    stack: FleetClient, settings: Settings
) -> None:
    url = f"http://127.0.0.1:{settings.port}/events"
    async with aiohttp.ClientSession(headers=AUTH) as s:
        async with s.get(url, params={"machineId": "nope"}) as r:
            assert r.status == 400
        async with s.get(url) as r:
            assert r.status == 200
            assert r.headers["Content-Type"] == "text/event-stream"
    inst = await stack.create_instance("sse")
    machine = await stack.create_machine(inst.id)
    seqs = []
    async with contextlib.aclosing(stack.events(machine.id)) as events:
        async for seq, _ in events:
            seqs.append(seq)
            if len(seqs) == 2:
                break
    # Resuming after the first event's id starts with the second.
    async with contextlib.aclosing(stack.events(machine.id, since=seqs[0])) as events:
        async for seq, _ in events:
            assert seq == seqs[1]
            break


async def test_option_injection_in_repos_is_refused(stack: FleetClient, settings: Settings) -> None:
    # One through the real gateway; every injection is tests/fast/test_gateway_rpc_errors.py's.
    field, value = "branch", "--upload-pack=touch"
    inst = await stack.create_instance("attacked")
    params = {"instanceId": inst.id, "url": "https://example.com/r.git", "branch": "main",
              "path": "r", field: value}  # fmt: skip
    body = {"jsonrpc": "2.0", "id": 1, "method": "repos.add", "params": params}
    _, answer = await post(settings, json.dumps(body), AUTH)
    assert answer["error"]["code"] == -32602
    assert answer["error"]["data"]["field"] == f"$.{field}"
    assert await stack.list_repos(inst.id) == []


async def sse_lines(settings: Settings, query: str, until: bytes) -> list[bytes]:
    """The raw lines of GET /events up to (and including) the first line equal to ``until``."""
    url = f"http://127.0.0.1:{settings.port}/events?{query}"
    lines: list[bytes] = []
    async with aiohttp.ClientSession() as s, s.get(url, headers=AUTH) as r:
        assert r.status == 200
        async with asyncio.timeout(10):
            async for raw in r.content:
                lines.append(raw.rstrip(b"\r\n"))
                if lines[-1] == until:
                    return lines
    raise AssertionError(f"the stream ended without {until!r}: {lines}")


async def test_events_mark_the_end_of_what_is_stored(
    stack: FleetClient, settings: Settings
) -> None:
    # Nothing stored yet (new events only): caught up at once.
    assert b"event: caught-up" in await sse_lines(settings, "", b"event: caught-up")
    inst = await stack.create_instance("caught")
    machine = await stack.create_machine(inst.id)
    await stack.wait_for(machine.id, ["ready"], timeout_s=60)
    lines = await sse_lines(settings, f"machineId={machine.id}", b"event: caught-up")
    ids = [line for line in lines if line.startswith(b"id: ")]
    assert len(ids) == 5  # created .. ready, then the marker, in that order
    assert lines.index(b"event: caught-up") > lines.index(ids[-1])
    kinds = [e async for _, e in stack.events(machine.id, follow=False)]
    assert len(kinds) == 5  # the client stops at the marker
