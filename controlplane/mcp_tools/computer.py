"""The MCP tool ``computer``: a machine's desktop driven with the arguments of Anthropic's
computer-use tool (``computer_20250124``: ``action``, ``coordinate``, ``start_coordinate``,
``text``, ``scroll_direction``, ``scroll_amount``, ``duration``), plus ``machine_id``.

Each action is one ``machines.desktop.act`` call (``screenshot`` is
``machines.desktop.screenshot``), through the backend's gateway method, so its scope, budget
and audit are that method's; every action but ``cursor_position`` answers the screen after it,
as an image, as Anthropic's reference tool does. Coordinates are the display's pixels.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import msgspec
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ContentBlock, ImageContent, TextContent

from contracts.daemon import desktop as dd
from contracts.errors import FleetError, InvalidParams
from contracts.gateway.desktop import (
    MACHINES_DESKTOP_ACT,
    MACHINES_DESKTOP_SCREENSHOT,
    MachineActParams,
    MachineScreenshotParams,
)
from contracts.rpc.jsonrpc import MethodSpec, P, R

COMPUTER_TOOL = "computer"
ComputerAction = Literal[
    "screenshot", "left_click", "right_click", "middle_click", "double_click", "triple_click",
    "mouse_move", "left_click_drag", "left_mouse_down", "left_mouse_up", "scroll", "type",
    "key", "hold_key", "wait", "cursor_position",
]  # fmt: skip
_CLICKS: dict[str, tuple[dd.Button, int]] = {
    "left_click": ("left", 1), "right_click": ("right", 1), "middle_click": ("middle", 1),
    "double_click": ("left", 2), "triple_click": ("left", 3),
}  # fmt: skip
_SCROLLS = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}
DEFAULT_SCROLL = 3


class GatewayBackend(Protocol):
    async def gateway(self, spec: MethodSpec[P, R], params: P, ctx: Context) -> R: ...


class ComputerArgs(msgspec.Struct, kw_only=True):
    action: ComputerAction
    coordinate: tuple[int, int] | None = None
    start_coordinate: tuple[int, int] | None = None
    text: str | None = None
    scroll_direction: Literal["up", "down", "left", "right"] | None = None
    scroll_amount: int | None = None
    duration: float | None = None


def _point(args: ComputerArgs, name: str = "coordinate") -> tuple[int, int]:
    point: tuple[int, int] | None = getattr(args, name)
    if point is None:
        raise InvalidParams(f"{args.action} needs `{name}` [x, y]", field=f"$.{name}")
    return point


def _text(args: ComputerArgs) -> str:
    if not args.text:
        raise InvalidParams(f"{args.action} needs `text`", field="$.text")
    return args.text


def _ms(args: ComputerArgs) -> int:
    if args.duration is None or args.duration < 0:
        raise InvalidParams(f"{args.action} needs `duration` in seconds", field="$.duration")
    return round(args.duration * 1000)


def actions(args: ComputerArgs) -> list[dict[str, Any]]:
    """The desktop actions (as ``machines.desktop.act`` takes them) that carry out ``args``."""
    a = args.action
    if a in _CLICKS:
        if args.text:
            raise InvalidParams("keys held during a click are not supported", field="$.text")
        button, count = _CLICKS[a]
        at = args.coordinate or (None, None)
        return [{"type": "click", "x": at[0], "y": at[1], "button": button, "count": count}]
    if a == "mouse_move":
        x, y = _point(args)
        return [{"type": "move", "x": x, "y": y}]
    if a == "left_click_drag":
        (x, y), (to_x, to_y) = _point(args, "start_coordinate"), _point(args)
        return [{"type": "drag", "x": x, "y": y, "toX": to_x, "toY": to_y}]
    if a in ("left_mouse_down", "left_mouse_up"):
        return [{"type": "press", "button": "left", "down": a == "left_mouse_down"}]
    if a == "scroll":
        dx, dy = _SCROLLS[args.scroll_direction or "down"]
        n = DEFAULT_SCROLL if args.scroll_amount is None else args.scroll_amount
        at = args.coordinate or (None, None)
        return [{"type": "scroll", "x": at[0], "y": at[1], "dx": dx * n, "dy": dy * n}]
    if a == "type":
        return [{"type": "type", "text": _text(args)}]
    if a == "key":
        return [{"type": "key", "keys": _text(args)}]
    if a == "hold_key":
        return [{"type": "key", "keys": _text(args), "holdMs": _ms(args)}]
    if a == "wait":
        return [{"type": "wait", "ms": _ms(args)}]
    return []  # screenshot, cursor_position


def _image(shot: dd.Screenshot) -> ImageContent:
    return ImageContent(data=shot.image, mime_type=f"image/{shot.format}")


async def computer(backend: GatewayBackend, machine_id: str, args: ComputerArgs,
                   ctx: Context) -> CallToolResult:  # fmt: skip
    if args.action == "screenshot":
        params = msgspec.convert({"machineId": machine_id}, MachineScreenshotParams)
        shot = await backend.gateway(MACHINES_DESKTOP_SCREENSHOT, params, ctx)
        return CallToolResult(content=[_image(shot)])
    want: dict[str, Any] | None = None if args.action == "cursor_position" else {}
    raw = {"machineId": machine_id, "actions": actions(args), "screenshot": want}
    try:
        act = msgspec.convert(raw, MachineActParams)
    except msgspec.ValidationError as exc:
        raise InvalidParams(str(exc)) from None
    done = await backend.gateway(MACHINES_DESKTOP_ACT, act, ctx)
    content: list[ContentBlock] = [TextContent(text=f"X={done.x},Y={done.y}")]
    if done.screenshot is not None:
        content = [_image(done.screenshot)]
    return CallToolResult(content=content)


def add_computer(server: MCPServer[Any], backend: GatewayBackend,
                 error: Any) -> None:  # fmt: skip
    """``computer`` on ``server``; ``error`` turns a FleetError into the tool's error."""

    @server.tool(
        name=COMPUTER_TOOL,
        description="Use a machine's desktop (machines.desktop.*; start it first with "
        "machines.desktop.start) with the mouse and keyboard, as Anthropic's computer tool: "
        "action is screenshot, left_click, right_click, middle_click, double_click, "
        "triple_click, mouse_move, left_click_drag (start_coordinate to coordinate), "
        "left_mouse_down, left_mouse_up, scroll (scroll_direction, scroll_amount), type "
        "(text), key (text: xdotool key names, e.g. ctrl+l, Return), hold_key (text, "
        "duration s), wait (duration s) or cursor_position. Answers the screen after it.",
    )
    async def computer_tool(
        machine_id: str,
        action: ComputerAction,
        ctx: Context,
        coordinate: tuple[int, int] | None = None,
        start_coordinate: tuple[int, int] | None = None,
        text: str | None = None,
        scroll_direction: Literal["up", "down", "left", "right"] | None = None,
        scroll_amount: int | None = None,
        duration: float | None = None,
    ) -> CallToolResult:
        args = ComputerArgs(action=action, coordinate=coordinate,
                            start_coordinate=start_coordinate, text=text,
                            scroll_direction=scroll_direction, scroll_amount=scroll_amount,
                            duration=duration)  # fmt: skip
        try:
            return await computer(backend, machine_id, args, ctx)
        except FleetError as exc:
            raise error(exc) from exc
