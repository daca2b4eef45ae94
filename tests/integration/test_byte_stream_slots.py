"""The gateway bounds the byte streams one token holds open at once (tunnels, previews,
terminal attaches, file transfers), with real daemons: past the bound the next is refused with
1046 TooManyStreams (429) before the daemon is asked, and a closed one frees its slot."""

from __future__ import annotations

import aiohttp
import msgspec
import pytest

from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN
from tests.integration.test_ports import bearer, previews, serve_in_machine
from tests.waiters import wait_until

LIMIT = 2


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, streams_per_token=LIMIT)


async def test_one_token_holds_at_most_its_streams_and_a_closed_one_frees_its_slot(
    stack: FleetClient, settings: Settings
) -> None:
    m = await serve_in_machine(stack, "slots")
    base = f"http://127.0.0.1:{settings.port}"
    tunnel = f"{base}/machines/{m.id}/tunnel/{m.upper}"
    admin = bearer(ADMIN_TOKEN)
    other = await stack.create_token("other", m.instance_id)
    async with aiohttp.ClientSession() as session:
        held = [await session.ws_connect(tunnel, headers=admin) for _ in range(LIMIT)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(tunnel, headers=admin)
        assert refused.value.status == 429
        page = f"{previews(settings)}/machines/{m.id}/ports/{m.http}/"
        for url in (page, f"{base}/machines/{m.id}/files/x"):
            async with session.get(url, headers=admin) as r:
                assert r.status == 429, url
                assert (await r.json())["error"]["code"] == 1046
        # Another token is not held back by this one's streams.
        async with session.get(page, headers=bearer(other.token)) as r:
            assert r.status == 200
        await held.pop().close()

        async def frees() -> bool:
            try:
                held.append(await session.ws_connect(tunnel, headers=admin))
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status != 429:
                    raise
                return False
            return True

        await wait_until(frees, timeout=10)
        for ws in held:
            await ws.close()


async def test_revoking_a_token_ends_its_open_tunnels(
    stack: FleetClient, settings: Settings
) -> None:
    m = await serve_in_machine(stack, "revoked")
    created = await stack.create_token("short-lived", m.instance_id)
    tunnel = f"http://127.0.0.1:{settings.port}/machines/{m.id}/tunnel/{m.upper}"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(tunnel, headers=bearer(created.token)) as ws,
    ):
        await ws.send_bytes(b"abc")
        assert (await ws.receive(timeout=10)).data == b"ABC"
        await stack.revoke_token(created.id)
        msg = await ws.receive(timeout=10)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert msg.data == 1011
        assert "revoked" in msg.extra
