"""The desktop's gateway methods (machines.desktop.*): params validated before any daemon is
asked (an action's type, a key's name, a URL's scheme), each method's scope (driving takes
exec, looking takes ports), the daemon's answer and its named errors passed through, and the
live view's ticket naming the port that takes input only for a caller who may exec. The
display itself is tested on real machines in tests/integration/test_desktop*.py."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.daemon import desktop as dd
from contracts.errors import DesktopNotRunning, Forbidden, InvalidParams
from services.gateway.auth import Caller
from services.gateway.streams.tunnels import port_scope
from tests.fast.conftest import World
from tests.fast.test_gateway import method, token_of, two_instances


def _as(instance_id: str, *scopes: str) -> Caller:
    return Caller(token_id="t-00000000000000bb", admin=False, instance_id=instance_id,
                  scopes=frozenset(scopes))  # fmt: skip


async def _machine(world: World) -> tuple[str, str, str]:
    a, b = await two_instances(world)
    return (await world.ready_machine(a)).id, a, b


@method("machines.desktop.start", "machines.desktop.get", "machines.desktop.stop")
async def test_a_display_starts_once_and_stops(world: World) -> None:
    mid, a, b = await _machine(world)
    got = await world.rpc("machines.desktop.get", {"machineId": mid}, _as(a, "machines:read"))
    assert got["running"] is False
    start = {"machineId": mid, "width": 1024, "height": 768}
    first = await world.rpc("machines.desktop.start", start, token_of(a))
    assert (first["running"], first["width"], first["viewPort"]) == (True, 1024, dd.VIEW_PORT)
    (call,) = world.daemons.calls_of(dd.DESKTOP_START.name, mid)
    assert call.params == dd.DesktopStartParams(width=1024, height=768)
    assert call.timeout_s is not None
    assert call.timeout_s >= dd.START_TIMEOUT_S
    with pytest.raises(Forbidden):  # driving the screen takes exec
        await world.rpc("machines.desktop.start", start, _as(a, "machines:read", "ports"))
    with pytest.raises(Forbidden):
        await world.rpc("machines.desktop.get", {"machineId": mid}, token_of(b))
    with pytest.raises(InvalidParams):
        await world.rpc("machines.desktop.start", {**start, "width": 100_000}, token_of(a))
    stopped = await world.rpc("machines.desktop.stop", {"machineId": mid}, token_of(a))
    assert stopped["running"] is False


@method("machines.desktop.screenshot")
async def test_a_screenshot_takes_ports_and_is_the_daemon_s(world: World) -> None:
    mid, a, _ = await _machine(world)
    with pytest.raises(DesktopNotRunning):
        await world.rpc("machines.desktop.screenshot", {"machineId": mid}, token_of(a))
    await world.rpc("machines.desktop.start", {"machineId": mid}, token_of(a))
    shot = await world.rpc("machines.desktop.screenshot", {"machineId": mid, "scale": 0.5},
                           _as(a, "ports"))  # fmt: skip
    assert (shot["width"], shot["height"], shot["screenWidth"]) == (640, 400, dd.DEFAULT_WIDTH)
    with pytest.raises(Forbidden):  # the screen shows what a preview would: not a viewer's
        await world.rpc("machines.desktop.screenshot", {"machineId": mid},
                        _as(a, "machines:read"))  # fmt: skip
    with pytest.raises(InvalidParams):
        await world.rpc("machines.desktop.screenshot", {"machineId": mid, "format": "gif"},
                        token_of(a))  # fmt: skip


BAD_ACTIONS: list[dict[str, Any]] = [
    {"type": "teleport", "x": 1, "y": 1},
    {"type": "click", "x": 1},  # a point needs both
    {"type": "key", "keys": "ctrl+l; rm -rf ~"},  # key names only: nothing a shell would read
    {"type": "key", "keys": "$(reboot)"},
    {"type": "move", "x": -1, "y": 0},
    {"type": "type", "text": ""},
    {"type": "wait", "ms": dd.MAX_WAIT_MS + 1},
]


@method("machines.desktop.act")
@pytest.mark.parametrize("action", BAD_ACTIONS)
async def test_a_bad_action_is_refused_before_the_daemon(
    world: World, action: dict[str, Any]
) -> None:
    mid, a, _ = await _machine(world)
    with pytest.raises(InvalidParams):
        await world.rpc("machines.desktop.act", {"machineId": mid, "actions": [action]},
                        token_of(a))  # fmt: skip
    assert world.daemons.calls_of(dd.DESKTOP_ACT.name, mid) == []


@method("machines.desktop.act")
async def test_actions_reach_the_daemon_in_order_bounded(world: World) -> None:
    mid, a, _ = await _machine(world)
    await world.rpc("machines.desktop.start", {"machineId": mid}, token_of(a))
    actions = [
        {"type": "click", "x": 10, "y": 20, "button": "right"},
        {"type": "type", "text": "$(echo hi); `id`"},
        {"type": "key", "keys": "ctrl+l"},
        {"type": "scroll", "dy": 3},
        {"type": "drag", "x": 1, "y": 2, "toX": 3, "toY": 4},
    ]
    got = await world.rpc(
        "machines.desktop.act",
        {"machineId": mid, "actions": actions, "screenshot": {"scale": 0.25}},
        token_of(a),
    )
    assert (got["done"], got["screenshot"]["width"]) == (5, 320)
    assert world.daemons[mid].desktop.actions == [
        dd.Click(x=10, y=20, button="right"),
        dd.Type(text="$(echo hi); `id`"),
        dd.Key(keys="ctrl+l"),
        dd.Scroll(dy=3),
        dd.Drag(x=1, y=2, to_x=3, to_y=4),
    ]
    too_many = [{"type": "wait", "ms": 0}] * (dd.MAX_ACTIONS + 1)
    with pytest.raises(InvalidParams):
        await world.rpc("machines.desktop.act", {"machineId": mid, "actions": too_many},
                        token_of(a))  # fmt: skip
    waits = [{"type": "wait", "ms": dd.MAX_WAIT_MS}, {"type": "wait", "ms": 1}]
    with pytest.raises(InvalidParams):  # the waits of one call are bounded together
        await world.rpc("machines.desktop.act", {"machineId": mid, "actions": waits},
                        token_of(a))  # fmt: skip
    with pytest.raises(Forbidden):
        await world.rpc("machines.desktop.act", {"machineId": mid, "actions": []},
                        _as(a, "machines:read", "ports"))  # fmt: skip


@method("machines.desktop.open")
@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "--user-data-dir=/tmp/x", "http://a b", "chrome://settings", "data:,x"],
)
async def test_open_takes_web_and_file_urls_only(world: World, url: str) -> None:
    mid, a, _ = await _machine(world)
    await world.rpc("machines.desktop.start", {"machineId": mid}, token_of(a))
    with pytest.raises(InvalidParams):
        await world.rpc("machines.desktop.open", {"machineId": mid, "url": url}, token_of(a))
    ok = "http://127.0.0.1:8000/?q=a&b=c"
    await world.rpc("machines.desktop.open", {"machineId": mid, "url": ok}, token_of(a))
    assert world.daemons[mid].desktop.opened == [ok]


@method("machines.desktop.view")
async def test_the_live_view_takes_input_only_for_a_caller_who_may_exec(world: World) -> None:
    mid, a, _ = await _machine(world)
    with pytest.raises(DesktopNotRunning):
        await world.rpc("machines.desktop.view", {"machineId": mid}, token_of(a))
    await world.rpc("machines.desktop.start", {"machineId": mid}, token_of(a))
    full = await world.rpc("machines.desktop.view", {"machineId": mid}, token_of(a))
    assert full["viewOnly"] is False
    assert f"-{dd.VIEW_PORT}." in full["url"]
    assert "/vnc.html?autoconnect=1" in full["url"]
    looker = await world.rpc("machines.desktop.view", {"machineId": mid}, _as(a, "ports"))
    assert looker["viewOnly"] is True
    assert f"-{dd.VIEW_ONLY_PORT}." in looker["url"]
    assert "view_only=1" in looker["url"]
    assert looker["ticket"] != full["ticket"]
    with pytest.raises(Forbidden):
        await world.rpc("machines.desktop.view", {"machineId": mid}, _as(a, "machines:read"))
    # Whatever ticket a caller holds, the port that takes input opens for exec alone.
    assert (port_scope(dd.VIEW_PORT), port_scope(dd.VIEW_ONLY_PORT)) == ("machines:exec", "ports")
