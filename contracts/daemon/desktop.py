"""The daemon's desktop: one virtual display per machine, its screen, mouse and keyboard.

A display (an X server with no screen of its own, Xvfb), a small window manager and a browser
(Chromium), started by ``tool.desktop.start`` as the daemon's children: they run as the
machine's user, in its sandbox, and count in its memory limit. The screen is read from the X
server's own framebuffer and encoded as PNG or JPEG; the mouse and keyboard are driven through
the X server's test extension (``xdotool``, argv only: typed text goes in on its stdin, never
through a shell or an argument). A live view (VNC, through the machine's preview) is served on
two loopback ports of the machine: one that takes input, one that only shows.

Coordinates are the display's pixels, ``(0, 0)`` at the top left; an action outside the screen
is refused whole before any action of its call runs.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from contracts.errors import (
    DaemonTimeout,
    DaemonUnavailable,
    DesktopNotRunning,
    DesktopUnavailable,
    InvalidParams,
    ToolError,
)
from contracts.rpc.jsonrpc import AnySpec, MethodSpec, NoParams, Params, Result

DEFAULT_WIDTH = 1280
DEFAULT_HEIGHT = 800
DEFAULT_DPI = 96
#: Actions in one ``act`` call.
MAX_ACTIONS = 100
#: Characters one ``type`` action types.
MAX_TYPE_CHARS = 10_000
#: The longest ``wait`` action, and all the waits of one call together.
MAX_WAIT_MS = 10_000
#: A URL's length.
MAX_URL_CHARS = 8192
#: The live view's ports on the machine's loopback (a websocket that speaks VNC, with noVNC's
#: page at ``/vnc.html``): the first takes the viewer's mouse and keyboard, the second only
#: shows. The platform's own, like a kernel's: a program of the machine's may not listen there
#: while the desktop runs.
VIEW_PORT = 6080
VIEW_ONLY_PORT = 6081
#: How long a display has to come up (its X server, its window manager, its browser's window).
START_TIMEOUT_S = 30.0

Width = Annotated[int, msgspec.Meta(ge=320, le=3840)]
Height = Annotated[int, msgspec.Meta(ge=200, le=2160)]
Coordinate = Annotated[int, msgspec.Meta(ge=0, le=3839)]
ImageFormat = Literal["png", "jpeg"]
Button = Literal["left", "middle", "right"]
#: A key, or a chord of keys joined by ``+``, as xdotool names them (X keysyms: ``Return``,
#: ``ctrl+l``, ``ctrl+shift+Tab``, ``F5``); several separated by spaces are pressed in turn.
KEYS_RE = re.compile(r"^[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*( [A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*){0,15}$")
#: What ``open`` takes: a web page, a file of the machine's, or a blank page.
URL_RE = re.compile(r"^(https?://[^\s]+|file:///[^\s]*|about:blank)$")


class DesktopStartParams(Params, kw_only=True):
    width: Width = DEFAULT_WIDTH
    height: Height = DEFAULT_HEIGHT
    dpi: Annotated[int, msgspec.Meta(ge=48, le=384)] = DEFAULT_DPI


class DesktopInfo(Result, kw_only=True):
    running: bool
    width: int
    height: int
    dpi: int
    #: The X display's name in the machine (``:0``), for the machine's own programs.
    display: str | None = None
    #: Whether the machine has a browser for ``open``.
    browser: bool = False
    #: The live view's loopback ports (``VIEW_PORT``, ``VIEW_ONLY_PORT``); None: no live view
    #: (the machine has no VNC server or websocket bridge).
    view_port: int | None = None
    view_only_port: int | None = None


class ScreenshotParams(Params, kw_only=True):
    format: ImageFormat = "png"
    #: The picture's size as a share of the screen's (each side); it is made smaller still if
    #: it would have more pixels than the machine allows (``FLEET_DESKTOP_MAX_PIXELS``).
    scale: Annotated[float, msgspec.Meta(gt=0, le=1)] = 1.0


class Screenshot(Result, kw_only=True):
    #: The picture, base64.
    image: str
    format: ImageFormat
    #: The picture's size (the screen's, times its scale).
    width: int
    height: int
    #: The screen's size: a point of the picture is at (x / width * screenWidth, ...) on it.
    screen_width: int
    screen_height: int


class _Action(Params, kw_only=True, tag_field="type"):
    pass


class Move(_Action, tag="move", kw_only=True):
    x: Coordinate
    y: Coordinate


class Click(_Action, tag="click", kw_only=True):
    x: Coordinate | None = None
    y: Coordinate | None = None
    button: Button = "left"
    count: Annotated[int, msgspec.Meta(ge=1, le=3)] = 1

    def __post_init__(self) -> None:
        if (self.x is None) != (self.y is None):
            raise ValueError("a click gives both `x` and `y`, or neither (where the mouse is)")


class Press(_Action, tag="press", kw_only=True):
    """A mouse button held down (``down: true``) or let go where the mouse is."""

    button: Button = "left"
    down: bool


class Drag(_Action, tag="drag", kw_only=True):
    """The left button pressed at (x, y), the mouse moved to (toX, toY), the button let go."""

    x: Coordinate
    y: Coordinate
    to_x: Coordinate
    to_y: Coordinate


class Scroll(_Action, tag="scroll", kw_only=True):
    """The wheel turned where (x, y) is (or the mouse is): ``dy`` notches down (negative: up),
    ``dx`` right (negative: left)."""

    x: Coordinate | None = None
    y: Coordinate | None = None
    dx: Annotated[int, msgspec.Meta(ge=-100, le=100)] = 0
    dy: Annotated[int, msgspec.Meta(ge=-100, le=100)] = 0

    def __post_init__(self) -> None:
        if (self.x is None) != (self.y is None):
            raise ValueError("a scroll gives both `x` and `y`, or neither (where the mouse is)")


class Type(_Action, tag="type", kw_only=True):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TYPE_CHARS)]


class Key(_Action, tag="key", kw_only=True):
    keys: Annotated[str, msgspec.Meta(pattern=KEYS_RE.pattern, max_length=256)]
    #: Held down for this long (``hold_key``), else pressed and let go.
    hold_ms: Annotated[int, msgspec.Meta(ge=0, le=MAX_WAIT_MS)] = 0


class Wait(_Action, tag="wait", kw_only=True):
    ms: Annotated[int, msgspec.Meta(ge=0, le=MAX_WAIT_MS)]


Action = Move | Click | Press | Drag | Scroll | Type | Key | Wait


class ActParams(Params, kw_only=True):
    actions: Annotated[list[Action], msgspec.Meta(max_length=MAX_ACTIONS)]
    #: A screenshot after the last action, once the screen has settled.
    screenshot: ScreenshotParams | None = None

    def __post_init__(self) -> None:
        waits = sum(a.ms for a in self.actions if isinstance(a, Wait))
        waits += sum(a.hold_ms for a in self.actions if isinstance(a, Key))
        if waits > MAX_WAIT_MS:
            raise ValueError(f"a call's waits add up to at most {MAX_WAIT_MS} ms")


class ActResult(Result, kw_only=True):
    #: The actions carried out (all of them).
    done: int
    #: Where the mouse is after them.
    x: int
    y: int
    screenshot: Screenshot | None = None


class OpenParams(Params, kw_only=True):
    url: Annotated[str, msgspec.Meta(pattern=URL_RE.pattern, max_length=MAX_URL_CHARS)]


class Opened(Result, kw_only=True):
    url: str


_DESKTOP = (DaemonUnavailable, DaemonTimeout, InvalidParams, ToolError)

DESKTOP_START = MethodSpec(
    "tool.desktop.start",
    DesktopStartParams,
    DesktopInfo,
    "Start the machine's display (its X server, window manager, browser and live view) if it "
    "does not run; one display per machine, its size the first start's.",
    (*_DESKTOP, DesktopUnavailable),
)
DESKTOP_STOP = MethodSpec(
    "tool.desktop.stop",
    NoParams,
    DesktopInfo,
    "Stop the machine's display and every program of it.",
    _DESKTOP,
)
DESKTOP_GET = MethodSpec(
    "tool.desktop.get", NoParams, DesktopInfo, "Whether the display runs, and its size.", _DESKTOP
)
DESKTOP_SCREENSHOT = MethodSpec(
    "tool.desktop.screenshot",
    ScreenshotParams,
    Screenshot,
    "The screen as it is now, as a PNG or JPEG.",
    (*_DESKTOP, DesktopNotRunning),
)
DESKTOP_ACT = MethodSpec(
    "tool.desktop.act",
    ActParams,
    ActResult,
    "Mouse and keyboard actions, in order; a screenshot after the last when asked.",
    (*_DESKTOP, DesktopNotRunning),
)
DESKTOP_OPEN = MethodSpec(
    "tool.desktop.open",
    OpenParams,
    Opened,
    "The display's browser at a URL (a new tab of the running browser, or the browser started).",
    (*_DESKTOP, DesktopNotRunning, DesktopUnavailable),
)

DESKTOP_METHODS: tuple[AnySpec, ...] = (
    DESKTOP_START,
    DESKTOP_STOP,
    DESKTOP_GET,
    DESKTOP_SCREENSHOT,
    DESKTOP_ACT,
    DESKTOP_OPEN,
)
