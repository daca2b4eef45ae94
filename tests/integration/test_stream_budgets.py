"""A streamed command spends the exec budget of the plain one, on a real gateway and daemon:
past ``FLEET_RATE_EXEC_PER_MIN`` a ``machines.execStream`` on ``POST /rpc/stream`` is refused
with 1029 (HTTP 429, ``Retry-After``) before its stream begins, and its command never runs. The
rule over every route that runs something: tests/fast/test_stream_budgets.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import msgspec
import pytest

from contracts.errors import RateLimited
from contracts.gateway.live import RPC_STREAM_PATH, SSE_RESULT
from controlplane.settings import Settings
from fleet.client import FleetClient
from fleet.client.streams import sse_events
from tests.conftest import new_ready_machine

BUDGET = 4
CALLS = 6


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, rate_exec_per_min=BUDGET)


async def _exec_stream(s: aiohttp.ClientSession, url: str, mid: str) -> tuple[int, Any]:
    """One ``machines.execStream`` that appends a line to ``~/runs``: its HTTP status, and its
    result event's answer (a stream) or its JSON-RPC error answer (no stream)."""
    params = {"machineId": mid, "command": ["sh", "-c", "echo ran >> ~/runs"]}
    body = {"jsonrpc": "2.0", "id": 1, "method": "machines.execStream", "params": params}
    async with s.post(url, json=body) as resp:
        if resp.content_type != "text/event-stream":
            return resp.status, (await resp.json(), resp.headers.get("Retry-After"))
        events = [(kind, data) async for kind, data in sse_events(resp.content)]
    assert events[-1][0] == SSE_RESULT, events
    return resp.status, json.loads(events[-1][1])


async def test_exec_streams_past_the_exec_budget_are_refused_1029_and_run_nothing(
    stack: FleetClient, stack_settings: Settings
) -> None:
    mid = await new_ready_machine(stack, "stream-budget")
    machine = await stack.get_machine(mid)
    made = await stack.create_scoped_token("exec-only", scopes=["machines:exec"],
                                           instance_ids=[machine.instance_id])  # fmt: skip
    url = f"http://127.0.0.1:{stack_settings.port}{RPC_STREAM_PATH}"
    headers = {"Authorization": f"Bearer {made.token}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        answers = await asyncio.wait_for(
            asyncio.gather(*(_exec_stream(s, url, mid) for _ in range(CALLS))), 120
        )
    ran = [a for status, a in answers if status == 200]
    refused = [a for status, a in answers if status == RateLimited.http_status]
    assert len(ran) == BUDGET, answers
    assert len(refused) == CALLS - BUDGET, answers
    assert all(a["result"]["exitCode"] == 0 for a in ran), ran
    for error, retry_after in refused:
        assert error["error"]["code"] == RateLimited.code == 1029
        assert error["error"]["data"]["retryAfterS"] >= 1
        assert retry_after is not None
        assert int(retry_after) >= 1
    # The admin's exec is not limited: it reads what the token's commands did.
    runs = await stack.exec(mid, ["cat", "runs"])
    assert runs.stdout == "ran\n" * BUDGET
