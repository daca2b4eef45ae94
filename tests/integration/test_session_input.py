"""sessions.open with bytes no process can take (a NUL in argv, an env value or cwd), through
the gateway to a real daemon: -32602 naming the field (was -32603), and no session opened."""

from __future__ import annotations

import aiohttp
import pytest

from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN
from tests.integration.test_refresh import ready_machine


async def test_a_nul_in_argv_env_or_cwd_is_invalid_params_naming_the_field(
    stack: FleetClient, settings: Settings
) -> None:
    mid = await ready_machine(stack, "nul")
    bad = [({"command": ["sh\x00x"]}, "command"), ({"command": ["sh", "-c", "a\x00"]}, "command"),
           ({"env": {"A": "b\x00c"}}, "env"), ({"cwd": "a\x00b"}, "cwd")]  # fmt: skip
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            for fields, field in bad:
                body = {"jsonrpc": "2.0", "id": 1, "method": "sessions.open",
                        "params": {"machineId": mid, **fields}}  # fmt: skip
                async with session.post(
                    f"http://127.0.0.1:{settings.port}/rpc",
                    json=body,
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                ) as r:
                    error = (await r.json())["error"]
                assert error["code"] == -32602, (fields, error)
                assert field in error["message"], (fields, error)
    assert await stack.list_sessions(mid) == []


async def test_a_machine_id_with_a_trailing_newline_is_refused_as_such(
    stack: FleetClient, settings: Settings
) -> None:
    """``^m-[0-9a-f]{16}$`` with ``re.match`` takes "m-...\\n": the WebSockets' ids are matched
    whole, so such an id is 400 naming machineId, never looked up (or put in a subject)."""
    mid = await ready_machine(stack, "newline")
    base = f"http://127.0.0.1:{settings.port}/machines/{mid}%0A"
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with aiohttp.ClientSession() as session:
        for path in ("/sessions/0123456789abcdef/attach", "/tunnel/80"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(base + path, headers=admin)
            assert refused.value.status == 400, path


async def test_an_events_ticket_opens_no_file_whose_path_ends_in_attach(
    stack: FleetClient, settings: Settings
) -> None:
    """A ticket stands in for the token on what a browser opens without headers; a download
    whose path happens to end in /attach is not one of those."""
    mid = await ready_machine(stack, "ticketfile")
    await stack.write_file(mid, "notes/attach", "secret notes")
    url = f"http://127.0.0.1:{settings.port}/machines/{mid}/files/notes/attach"
    async with aiohttp.ClientSession() as session:
        ticket = (await stack.events_ticket()).ticket
        async with session.get(url, params={"ticket": ticket}) as r:
            assert r.status == 401
            assert b"secret notes" not in await r.read()
        async with session.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
            assert await r.read() == b"secret notes"  # the file is there, for the token
