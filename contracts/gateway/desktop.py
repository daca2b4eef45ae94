"""Gateway methods of the desktop: ``machines.desktop.*`` (contracts.daemon.desktop).

Each is its daemon method with ``machineId`` added. Driving the screen is running something in
the machine: ``start``, ``stop``, ``act`` and ``open`` take ``machines:exec`` (and wake a
stopped or paused machine as an exec does); ``get`` only looks (``machines:read``).
``screenshot`` and ``view`` show the screen, as a preview of the machine shows its pages
(``ports``); ``view`` gives the live view's preview: the one that takes input to a caller who
may also exec, else the one that only shows. Neither wakes the machine.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from contracts.credentials import credential
from contracts.daemon.desktop import (
    ActParams,
    ActResult,
    DesktopInfo,
    DesktopStartParams,
    Opened,
    OpenParams,
    Screenshot,
    ScreenshotParams,
)
from contracts.errors import (
    Conflict,
    DaemonTimeout,
    DaemonUnavailable,
    DesktopNotRunning,
    DesktopUnavailable,
    Forbidden,
    InvalidParams,
    MachineStopped,
    NotFound,
    ToolError,
)
from contracts.ids import ID_LENGTH, MACHINE_ID_RE
from contracts.rpc.jsonrpc import AnySpec, ClientMethod, MethodSpec, Params, Result

_MachineId = Annotated[
    str, msgspec.Meta(pattern=MACHINE_ID_RE.pattern, min_length=ID_LENGTH, max_length=ID_LENGTH)
]


class MachineDesktopStartParams(DesktopStartParams, kw_only=True):
    machine_id: _MachineId


class MachineDesktopRef(Params, kw_only=True):
    machine_id: _MachineId


class MachineScreenshotParams(ScreenshotParams, kw_only=True):
    machine_id: _MachineId


class MachineActParams(ActParams, kw_only=True):
    machine_id: _MachineId


class MachineOpenParams(OpenParams, kw_only=True):
    machine_id: _MachineId


class DesktopView(Result, kw_only=True):
    """The live view (noVNC) on the machine's preview: open ``<url>?fleet_ticket=<ticket>``
    in a browser, as a preview ticket is opened."""

    ticket: Annotated[str, credential()]
    #: noVNC's page on the live view's preview, with what it is told in its query; add
    #: ``fleet_ticket=<ticket>`` to the query to open it.
    url: str
    expires_in_s: float
    #: True: the view shows the screen but takes no input (the caller may not exec).
    view_only: bool


_DESKTOP = (NotFound, Forbidden, Conflict, MachineStopped, DaemonUnavailable, DaemonTimeout,
            InvalidParams, ToolError)  # fmt: skip

MACHINES_DESKTOP_START: MethodSpec[MachineDesktopStartParams, DesktopInfo] = MethodSpec(
    "machines.desktop.start", MachineDesktopStartParams, DesktopInfo,
    "Start the machine's display (an X server, a window manager, the live view) if it does "
    "not run; one display per machine, its size the first start's.",
    (*_DESKTOP, DesktopUnavailable),
    scope="machines:exec", tool="desktop_start",
)  # fmt: skip
MACHINES_DESKTOP_STOP: MethodSpec[MachineDesktopRef, DesktopInfo] = MethodSpec(
    "machines.desktop.stop", MachineDesktopRef, DesktopInfo,
    "Stop the machine's display and every program of it (its browser included).", _DESKTOP,
    scope="machines:exec", tool="desktop_stop",
    client=ClientMethod("machines_desktop_stop", "machine_id"),
)  # fmt: skip
MACHINES_DESKTOP_GET: MethodSpec[MachineDesktopRef, DesktopInfo] = MethodSpec(
    "machines.desktop.get", MachineDesktopRef, DesktopInfo,
    "Whether the machine's display runs, and its size.", _DESKTOP,
    scope="machines:read", reads=True, tool="desktop_get",
    client=ClientMethod("machines_desktop_get", "machine_id"),
)  # fmt: skip
MACHINES_DESKTOP_SCREENSHOT: MethodSpec[MachineScreenshotParams, Screenshot] = MethodSpec(
    "machines.desktop.screenshot", MachineScreenshotParams, Screenshot,
    "The machine's screen as it is now: a PNG or JPEG, base64, scaled down to at most the "
    "machine's FLEET_DESKTOP_MAX_PIXELS.",
    (*_DESKTOP, DesktopNotRunning),
    scope="ports", reads=True, tool="desktop_screenshot",
    client=ClientMethod("machines_desktop_screenshot", "machine_id"),
)  # fmt: skip
MACHINES_DESKTOP_ACT: MethodSpec[MachineActParams, ActResult] = MethodSpec(
    "machines.desktop.act", MachineActParams, ActResult,
    "Mouse and keyboard actions on the machine's screen, in order (move, click, press, drag, "
    "scroll, type, key, wait); a screenshot after the last, once the screen settled, when "
    "asked. An action off the screen refuses the whole call before any runs.",
    (*_DESKTOP, DesktopNotRunning, DesktopUnavailable),
    scope="machines:exec", budget="exec", tool="desktop_act",
    client=ClientMethod("machines_desktop_act", "machine_id actions"),
)  # fmt: skip
MACHINES_DESKTOP_OPEN: MethodSpec[MachineOpenParams, Opened] = MethodSpec(
    "machines.desktop.open", MachineOpenParams, Opened,
    "The display's browser at a URL (http, https, file or about:blank): a new tab of the "
    "running browser, or the browser started.",
    (*_DESKTOP, DesktopNotRunning, DesktopUnavailable),
    scope="machines:exec", tool="desktop_open",
    client=ClientMethod("machines_desktop_open", "machine_id url"),
)  # fmt: skip
MACHINES_DESKTOP_VIEW: MethodSpec[MachineDesktopRef, DesktopView] = MethodSpec(
    "machines.desktop.view", MachineDesktopRef, DesktopView,
    "A single-use ticket that opens the machine's live view (noVNC, on the machine's "
    "preview) in a browser: it takes input if the caller may exec, else it only shows.",
    (*_DESKTOP, DesktopNotRunning, DesktopUnavailable),
    scope="ports",
    client=ClientMethod("machines_desktop_view", "machine_id"),
)  # fmt: skip

DESKTOP_METHODS: tuple[AnySpec, ...] = (
    MACHINES_DESKTOP_START,
    MACHINES_DESKTOP_STOP,
    MACHINES_DESKTOP_GET,
    MACHINES_DESKTOP_SCREENSHOT,
    MACHINES_DESKTOP_ACT,
    MACHINES_DESKTOP_OPEN,
    MACHINES_DESKTOP_VIEW,
)
