"""GET /events: open streams capped per token and per gateway (429 with Retry-After)."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
import msgspec
import pytest

from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, events_max_per_token=3, events_max_streams=6)


async def open_streams(
    es: contextlib.AsyncExitStack, url: str, headers: dict[str, str], n: int
) -> list[aiohttp.ClientResponse]:
    s = await es.enter_async_context(aiohttp.ClientSession(headers=headers))
    return [await es.enter_async_context(s.get(url)) for _ in range(n)]


async def test_streams_are_capped_per_token_and_per_gateway(
    stack: FleetClient, settings: Settings
) -> None:
    inst = await stack.create_instance("capped")
    machine = await stack.create_machine(inst.id)
    created = await stack.create_token("ci", inst.id)
    mine = {"Authorization": f"Bearer {created.token}"}
    url = f"{stack.url}/events?machineId={machine.id}"
    async with contextlib.AsyncExitStack() as es:
        first = await open_streams(es, url, mine, 4)
        assert [r.status for r in first] == [200, 200, 200, 429]
        assert int(first[-1].headers["Retry-After"]) >= 1
        assert (await first[-1].json())["error"]["code"] == 1029
        more = await open_streams(es, f"{stack.url}/events", AUTH, 4)
        assert [r.status for r in more] == [200, 200, 200, 429]  # 6 in this gateway
    # Closed streams free their slots (the gateway notices a gone client within a second).
    async with asyncio.timeout(5):
        while True:
            async with contextlib.AsyncExitStack() as es:
                if (await open_streams(es, url, mine, 1))[0].status == 200:
                    break
            await asyncio.sleep(0.1)  # between polls of a condition awaited with a timeout
