"""The desktop on gvisor machines, with a real Xvfb and Chromium in real runsc sandboxes: the
scenario of tests/desktop_checks.py (a page served in the machine, a button clicked, a field
typed into, both seen in the pixels), then the display with its browser across a pause and
resume (the same screen, the same field), and in three forks with memory, each typed into the
moment it is ready, all at once: each shows the page as it was with its own text after it, and
only its own; the browser's cookie is there after a reload. One stack for the module
(tests/gvisor_stack.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from PIL import ImageChops

from contracts.daemon import desktop as dd
from contracts.gateway.codemode import MCP_PATH
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN
from tests.desktop_checks import (
    Shot,
    blue_page,
    clicked_and_typed,
    green_page,
    shot,
    until,
)
from tests.gvisor_stack import gvisor_settings, module_stack
from tests.integration.test_codemode_mcp import mcp_client
from tests.integration.test_gvisor import READY_S, answers, paused_and_resumed
from tests.waiters import wait_until

__all__ = ["module_stack"]  # the fixture ``stack``, on this module's settings
pytestmark = pytest.mark.asyncio(loop_scope="module")

#: Pixels (of 1024x768) that may differ between two screenshots of the same screen: the text
#: caret's blink and the pointer are hidden or still, so this is room for a repainted edge.
SAME_SCREEN_PIXELS = 2000
#: The width of "src" at the start of the test page's field (48 px type): what the source typed.
SOURCE_TEXT_PX = 60


@pytest.fixture(scope="module")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with gvisor_settings(tmp_path_factory.mktemp("gvisor-desktop"), runtime="gvisor") as made:
        yield made


def differing(a: Shot, b: Shot) -> int:
    diff = ImageChops.difference(a.image, b.image).convert("L").point(lambda v: 255 if v else 0)
    return sum(diff.histogram()[255:])


async def ready_desktop_gvisor(stack: FleetClient, name: str) -> str:
    """A ready gvisor machine of the platform's default limits: Chromium's threads fit its
    pids limit as on any runtime (docs/desktop.md, "gVisor and the pids limit")."""
    inst = await stack.create_instance(name)
    created = await stack.create_machine(inst.id)
    got = await stack.wait_for(created.id, ["ready", "failed"], timeout_s=READY_S)
    assert got.status == "ready", got.status_reason
    return created.id


async def back(stack: FleetClient, mid: str) -> None:
    await wait_until(lambda: answers(stack, mid), timeout=180, every=0.5)


@pytest.mark.timeout(900)
async def test_the_desktop_and_its_browser_survive_a_pause_and_resume(stack: FleetClient) -> None:
    mid = await ready_desktop_gvisor(stack, "gv-desktop-pause")
    before, mark = await clicked_and_typed(stack, mid, "paused")
    await paused_and_resumed(stack, mid)
    await back(stack, mid)
    after = await shot(stack, mid)
    assert green_page(after)
    assert differing(before, after) < SAME_SCREEN_PIXELS
    assert after.field(mark).tobytes() == before.field(mark).tobytes()
    info = await stack.machines_desktop_get(mid)
    assert (info.running, info.width) == (True, 1024)


@pytest.mark.timeout(1500)
async def test_three_forks_with_memory_typed_into_at_once_each_show_their_own(
    stack: FleetClient, stack_settings: Settings
) -> None:
    """The source's field has the focus; each fork is typed into the moment it is ``ready``
    (one through MCP's ``computer`` tool), all three at once: a fork's display takes input
    when it is ready, so each shows its own text, and the source shows none of it."""
    mid = await ready_desktop_gvisor(stack, "gv-desktop-fork")
    source, mark = await clicked_and_typed(stack, mid, "src")
    forks = [m.id for m in await stack.fork_machine(mid, 3, memory=True)]
    texts = [" " + letter * (k + 2) for k, letter in enumerate("xyz")]
    url = f"http://127.0.0.1:{stack_settings.port}{MCP_PATH}"
    async with mcp_client(url, ADMIN_TOKEN) as mcp:

        async def type_once_ready(fork: str, text: str, by_mcp: bool) -> None:
            got = await stack.wait_for(fork, ["ready", "failed"], timeout_s=600)
            assert got.status == "ready", got.status_reason
            if by_mcp:
                typed = await mcp.call_tool("computer", {"machine_id": fork, "action": "type",
                                                         "text": text})  # fmt: skip
                assert not typed.is_error, typed
            else:
                await stack.machines_desktop_act(fork, [dd.Type(text=text)])

        each = zip(forks, texts, strict=True)
        await asyncio.gather(
            *(type_once_ready(f, t, by_mcp=k == 2) for k, (f, t) in enumerate(each))
        )

    def typed(s: Shot) -> bool:
        return green_page(s) and s.ink(mark) > source.ink(mark) + 50

    def typed_before(s: Shot) -> bytes:  # the field's start: what the source had typed
        return s.field(mark).crop((0, 0, SOURCE_TEXT_PX, s.field(mark).height)).tobytes()

    shown = [await until(lambda f=f: shot(stack, f), typed, timeout_s=60) for f in forks]
    assert {typed_before(s) for s in shown} == {typed_before(source)}  # the page as it was
    assert len({s.field(mark).tobytes() for s in shown}) == 3  # then each its own text alone
    assert (await shot(stack, mid)).field(mark).tobytes() == source.field(mark).tobytes()
    # The browser's cookie is in each fork's memory and profile: a reload paints the square
    # green at load, the field empty again.
    await stack.machines_desktop_act(forks[0], [dd.Key(keys="F5")])
    reloaded = await until(lambda: shot(stack, forks[0]),
                           lambda s: green_page(s) and s.ink(mark) < 50, timeout_s=60)  # fmt: skip
    assert not blue_page(reloaded)
