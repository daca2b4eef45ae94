"""The desktop on a real machine of the default runtime (namespaces) with a real Xvfb and a real
Chromium, through the whole stack: a page served in the machine, opened in its browser, a
button clicked and a field typed into, each seen in the next screenshot's pixels; the bounds
(an action off the screen, a screenshot's pixels), one display per machine, stop."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from mcp_types import ImageContent, TextContent

from contracts.daemon import desktop as dd
from contracts.errors import DesktopNotRunning, InvalidParams
from contracts.gateway.codemode import MCP_PATH
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN, ReadyMachine
from tests.desktop_checks import (
    BUTTON_FROM_MARK,
    FIELD_FROM_MARK,
    PAGE,
    SERVE,
    Shot,
    blue_page,
    green_page,
    plus,
    until,
)
from tests.integration.test_codemode_mcp import mcp_client

pytestmark = pytest.mark.asyncio(loop_scope="module")

PORT = 8765


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mid(ready_machine: ReadyMachine) -> AsyncIterator[str]:
    yield await ready_machine("desktop")


async def shot(client: FleetClient, mid: str) -> Shot:
    return Shot.of(await client.machines_desktop_screenshot(mid))


async def test_a_page_clicked_and_typed_into_shows_both(
    client_mid: tuple[FleetClient, str],
) -> None:
    client, mid = client_mid
    with pytest.raises(DesktopNotRunning):
        await client.machines_desktop_screenshot(mid)
    info = await client.machines_desktop_start(mid, width=1024, height=768)
    assert (info.running, info.width, info.height, info.browser) == (True, 1024, 768, True)
    again = await client.machines_desktop_start(mid, width=640, height=480)
    assert (again.display, again.width) == (info.display, 1024)  # one display, the first's size
    await client.write_file(mid, "site/index.html", PAGE)
    await client.start_process(mid, [*SERVE, str(PORT)], cwd="site", tag="site")
    await client.machines_desktop_open(mid, f"http://127.0.0.1:{PORT}/")
    await client.machines_desktop_act(mid, [dd.Move(x=0, y=700)])  # the pointer, off the page
    page = await until(lambda: shot(client, mid), blue_page)
    assert (page.image.width, page.image.height) == (1024, 768)
    mark = page.mark()
    assert mark is not None
    before = page.ink(mark)

    click = dd.Click(x=plus(mark, BUTTON_FROM_MARK)[0], y=plus(mark, BUTTON_FROM_MARK)[1])
    fx, fy = plus(mark, FIELD_FROM_MARK)
    done = await client.machines_desktop_act(
        mid, [click, dd.Click(x=fx, y=fy), dd.Type(text="fleet 42"), dd.Move(x=0, y=700)],
        screenshot=dd.ScreenshotParams(),
    )  # fmt: skip
    assert (done.done, done.x, done.y) == (4, 0, 700)
    assert done.screenshot is not None

    def both(s: Shot) -> bool:
        return green_page(s) and s.ink(mark) > before + 200

    if not both(Shot.of(done.screenshot)):  # the screen settles in its own time
        await until(lambda: shot(client, mid), both, timeout_s=20)
    # Keys: the field's text selected and deleted, gone from the screen.
    await client.machines_desktop_act(mid, [dd.Key(keys="ctrl+a BackSpace")])
    await until(lambda: shot(client, mid), lambda s: s.ink(mark) <= before, timeout_s=20)


async def test_actions_off_the_screen_are_refused_whole(
    client_mid: tuple[FleetClient, str],
) -> None:
    client, mid = client_mid
    await client.machines_desktop_start(mid, width=1024, height=768)
    moved = await client.machines_desktop_act(mid, [dd.Move(x=10, y=10)])
    with pytest.raises(InvalidParams) as refused:
        await client.machines_desktop_act(mid, [dd.Move(x=500, y=500), dd.Click(x=1024, y=5)])
    assert refused.value.data == {"field": "$.actions[1]"}
    still = await client.machines_desktop_act(mid, [])
    assert (still.x, still.y) == (moved.x, moved.y) == (10, 10)  # the first move never ran


async def test_screenshots_are_bounded_and_scaled(client_mid: tuple[FleetClient, str]) -> None:
    client, mid = client_mid
    await client.machines_desktop_start(mid, width=1024, height=768)
    half = await client.machines_desktop_screenshot(mid, scale=0.5, format="jpeg")
    assert (half.width, half.height, half.format) == (512, 384, "jpeg")
    assert base64.b64decode(half.image)[:3] == b"\xff\xd8\xff"
    assert (half.screen_width, half.screen_height) == (1024, 768)


@pytest_asyncio.fixture(loop_scope="module")
async def client_mid(shared_stack: FleetClient, mid: str) -> tuple[FleetClient, str]:
    return shared_stack, mid


async def test_stop_ends_the_display(client_mid: tuple[FleetClient, str]) -> None:
    client, mid = client_mid
    await client.machines_desktop_start(mid)
    stopped = await client.machines_desktop_stop(mid)
    assert not stopped.running
    assert not (await client.machines_desktop_get(mid)).running
    gone = await client.exec(mid, ["sh", "-c", "pgrep -x Xvfb || echo none"])
    assert gone.stdout.strip() == "none"


async def test_the_mcp_computer_tool_drives_the_same_scenario(
    shared_stack: FleetClient, shared_settings: Settings, ready_machine: ReadyMachine
) -> None:
    """An MCP client (the SDK's, over the gateway's /mcp) with Anthropic's computer-tool
    arguments: each action answers the screen, whose pixels show the click and the text."""
    mid = await ready_machine("desktop-mcp")
    await shared_stack.machines_desktop_start(mid, width=1024, height=768)
    await shared_stack.write_file(mid, "site/index.html", PAGE)
    await shared_stack.start_process(mid, [*SERVE, str(PORT)], cwd="site", tag="site")
    await shared_stack.machines_desktop_open(mid, f"http://127.0.0.1:{PORT}/")
    url = f"http://127.0.0.1:{shared_settings.port}{MCP_PATH}"
    async with mcp_client(url, ADMIN_TOKEN) as mcp:
        assert "computer" in {t.name for t in (await mcp.list_tools()).tools}

        async def computer(action: str, **args: Any) -> Shot:
            answer = await mcp.call_tool("computer", {"machine_id": mid, "action": action, **args})
            assert not answer.is_error, answer
            (image,) = answer.content
            assert isinstance(image, ImageContent)
            assert image.mime_type == "image/png"
            return Shot.of({"image": image.data})

        await computer("mouse_move", coordinate=[0, 700])
        page = await until(lambda: computer("screenshot"), blue_page)
        mark = page.mark()
        assert mark is not None
        before = page.ink(mark)
        await computer("left_click", coordinate=list(plus(mark, BUTTON_FROM_MARK)))
        await computer("left_click", coordinate=list(plus(mark, FIELD_FROM_MARK)))
        await computer("type", text="mcp 7")
        await computer("mouse_move", coordinate=[0, 700])
        await until(lambda: computer("screenshot"),
                    lambda s: green_page(s) and s.ink(mark) > before + 100)  # fmt: skip
        where = await mcp.call_tool("computer", {"machine_id": mid, "action": "cursor_position"})
        assert where.content == [TextContent(text="X=0,Y=700")]
        off = await mcp.call_tool("computer", {"machine_id": mid, "action": "left_click",
                                               "coordinate": [5000, 5]})  # fmt: skip
        assert off.is_error
        assert "-32602" in str(off.content)
