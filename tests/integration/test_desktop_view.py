"""Who drives a desktop through its live view, on a real machine with a real Xvfb and real
x11vnc and websockify, through the real gateway: a token that may only look at the machine's
ports (``ports``, ``machines:read``) tries every way to the VNC servers, as an attacker with
``fleet machines forward`` would, and speaks RFB to whatever answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
import pytest_asyncio

from contracts.daemon import desktop as dd
from contracts.errors import Forbidden, PortUnreachable
from controlplane.settings import Settings
from fleet.cli.tunnel import open_tunnel
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN, ReadyMachine
from tests.integration.test_ports import bearer, previews
from tests.rfb import NONE, Rfb

pytestmark = pytest.mark.asyncio(loop_scope="module")

#: Where x11vnc listens unless told otherwise (its own default, 5900 + n), IPv4 or IPv6.
VNC_DEFAULT_PORTS = (5900, 5901, 5902)


@pytest_asyncio.fixture(loop_scope="module")
async def looker(
    shared_stack: FleetClient, ready_machine: ReadyMachine
) -> AsyncIterator[tuple[FleetClient, str, str]]:
    """A machine showing its desktop, and a client whose token may look, not exec."""
    mid = await ready_machine("desktop-looker")
    await shared_stack.machines_desktop_start(mid, width=1024, height=768)
    await shared_stack.machines_desktop_open(mid, "about:blank")
    instance = (await shared_stack.get_machine(mid)).instance_id
    made = await shared_stack.create_scoped_token("looker", scopes=["ports", "machines:read"],
                                                  instance_ids=[instance])  # fmt: skip
    async with FleetClient(shared_stack.url, made.token) as client:
        yield client, mid, made.token


@asynccontextmanager
async def live_view(settings: Settings, mid: str, port: int, token: str) -> AsyncIterator[Rfb]:
    """RFB through the live view's websocket on ``port``, by the preview of ``token``'s
    caller (the way noVNC's page connects)."""
    url = f"{previews(settings)}/machines/{mid}/ports/{port}/websockify"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, headers=bearer(token), protocols=("binary",)) as ws,
    ):
        yield Rfb(ws)


async def test_a_ports_token_reaches_no_vnc_server_that_takes_input(
    shared_stack: FleetClient, shared_settings: Settings, looker: tuple[FleetClient, str, str]
) -> None:
    client, mid, token = looker
    # Both VNC servers answer: the one that takes input, to the admin...
    async with live_view(shared_settings, mid, dd.VIEW_PORT, ADMIN_TOKEN) as rfb:
        assert NONE in await rfb.security_types()
    # ...and the looker's, which shows the screen and takes no input.
    await shared_stack.machines_desktop_act(mid, [dd.Move(x=10, y=10)])
    async with live_view(shared_settings, mid, dd.VIEW_ONLY_PORT, token) as rfb:
        assert NONE in await rfb.security_types()
        assert await rfb.open_without_password() == (1024, 768)
        await rfb.point(500, 400, buttons=1)
        await rfb.handled()
    still = await shared_stack.machines_desktop_act(mid, [])
    assert (still.x, still.y) == (10, 10)
    # The input's port is refused to the looker, and a forward to any port a VNC server
    # could be on finds none that lets it in without a password.
    with pytest.raises(Forbidden):
        await open_tunnel(client, mid, dd.VIEW_PORT)
    for port in VNC_DEFAULT_PORTS:
        try:
            tunnel = await open_tunnel(client, mid, port)
        except PortUnreachable:
            continue
        async with tunnel:
            assert NONE not in await Rfb(tunnel).security_types(), f"port {port}"
    # The desktop listens on its live view's two ports, and on nothing else.
    listening = {p.port for p in (await shared_stack.machine_ports(mid)).ports}
    assert listening == {dd.VIEW_PORT, dd.VIEW_ONLY_PORT}
