"""The desktop's gateway methods (contracts.gateway.desktop): ``machines.desktop.*``.

Thin, as the code interpreter's are: the caller's machine is checked (and, for what drives the
screen, woken as an exec wakes it) through ``Access.live_machine``, then its daemon does the
work (daemon/desktop/tools.py). ``view`` is a preview ticket (services/gateway/rpc/ports.py) for
one of
the live view's two ports: the one that takes input only for a caller who may exec (tunnels.py asks
``machines:exec`` of whoever opens that port, whatever the ticket).
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from contracts.bus.events import WakeBy
from contracts.daemon import desktop as dd
from contracts.errors import DesktopNotRunning, DesktopUnavailable
from contracts.gateway import desktop as gd
from contracts.people import MACHINES_EXEC
from contracts.rpc.jsonrpc import MethodSpec, NoParams, P, R, handles
from controlplane.calls.daemon_client import EXEC_MARGIN_S, DaemonClient
from services.gateway.auth import Access, Caller
from services.gateway.rpc.daemon_calls import DaemonCalls
from services.gateway.rpc.ports import PortOps, PreviewGrant

#: A start waits for the X server and the live view; an open for the browser's hand-over.
_STARTING_S = dd.START_TIMEOUT_S + EXEC_MARGIN_S
#: A screenshot encodes a whole screen (on a gVisor machine, under its ptrace platform).
_SHOT_S = 30.0
#: Actions wait up to MAX_WAIT_MS in all, and a screenshot for the screen to settle.
_ACTING_S = dd.MAX_WAIT_MS / 1000 + 2 * dd.MAX_ACTIONS * 0.1 + _STARTING_S


class DesktopOps:
    def __init__(self, *, access: Access, daemons: DaemonClient, calls: DaemonCalls,
                 ports: PortOps) -> None:  # fmt: skip
        self.access = access
        self.daemons = daemons
        self.calls = calls
        self.ports = ports

    @handles(gd.MACHINES_DESKTOP_START)
    async def machines_desktop_start(self, p: gd.MachineDesktopStartParams,
                                     c: Caller) -> dd.DesktopInfo:  # fmt: skip
        params = dd.DesktopStartParams(width=p.width, height=p.height, dpi=p.dpi)
        return await self._drive(c, p.machine_id, dd.DESKTOP_START, params, _STARTING_S)

    @handles(gd.MACHINES_DESKTOP_STOP)
    async def machines_desktop_stop(self, p: gd.MachineDesktopRef, c: Caller) -> dd.DesktopInfo:
        return await self._drive(c, p.machine_id, dd.DESKTOP_STOP, NoParams(), _STARTING_S)

    @handles(gd.MACHINES_DESKTOP_GET)
    async def machines_desktop_get(self, p: gd.MachineDesktopRef, c: Caller) -> dd.DesktopInfo:
        return await self._look(c, p.machine_id, dd.DESKTOP_GET, NoParams())

    @handles(gd.MACHINES_DESKTOP_SCREENSHOT)
    async def machines_desktop_screenshot(self, p: gd.MachineScreenshotParams,
                                          c: Caller) -> dd.Screenshot:  # fmt: skip
        params = dd.ScreenshotParams(format=p.format, scale=p.scale)
        return await self._look(c, p.machine_id, dd.DESKTOP_SCREENSHOT, params, _SHOT_S)

    @handles(gd.MACHINES_DESKTOP_ACT)
    async def machines_desktop_act(self, p: gd.MachineActParams, c: Caller) -> dd.ActResult:
        params = dd.ActParams(actions=p.actions, screenshot=p.screenshot)
        return await self._drive(c, p.machine_id, dd.DESKTOP_ACT, params, _ACTING_S)

    @handles(gd.MACHINES_DESKTOP_OPEN)
    async def machines_desktop_open(self, p: gd.MachineOpenParams, c: Caller) -> dd.Opened:
        params = dd.OpenParams(url=p.url)
        return await self._drive(c, p.machine_id, dd.DESKTOP_OPEN, params, _STARTING_S)

    @handles(gd.MACHINES_DESKTOP_VIEW)
    async def machines_desktop_view(self, p: gd.MachineDesktopRef, c: Caller) -> gd.DesktopView:
        machine = await self.access.live_machine(c, p.machine_id, active=False)
        info = await self.daemons.call(p.machine_id, dd.DESKTOP_GET, NoParams())
        if not info.running:
            raise DesktopNotRunning("the machine's display does not run: "
                                    "machines.desktop.start it first")  # fmt: skip
        if info.view_port is None or info.view_only_port is None:
            raise DesktopUnavailable(
                "this machine's desktop has no live view (it lacks x11vnc, websockify or noVNC)",
                data={"missing": "live view"},
            )
        view_only = not c.may(machine.instance_id, MACHINES_EXEC)
        port = info.view_only_port if view_only else info.view_port
        grant = PreviewGrant(caller=c, machine_id=p.machine_id, port=port)
        previews = self.ports.previews
        page = self.ports.origin.url(p.machine_id, port)
        return gd.DesktopView(ticket=await previews.issue_ticket(grant),
                              url=view_url(page, view_only=view_only),
                              expires_in_s=previews.ticket_ttl_s, view_only=view_only)  # fmt: skip

    async def _drive(self, c: Caller, machine_id: str, spec: MethodSpec[P, R], params: P,
                     timeout_s: float) -> R:  # fmt: skip
        return await self.calls(c, machine_id, spec, params, wake=WakeBy.EXEC, timeout_s=timeout_s)

    async def _look(self, c: Caller, machine_id: str, spec: MethodSpec[P, R], params: P,
                    timeout_s: float | None = None) -> R:  # fmt: skip
        # A look (a console may poll it): it neither wakes the machine nor counts as activity.
        return await self.calls(c, machine_id, spec, params, look=True, timeout_s=timeout_s)


def view_url(preview: str, *, view_only: bool) -> str:
    """noVNC's page on the live view's preview (``preview``: its URL, ending in ``/``), told to
    connect at once, to scale the screen to the window, and where its websocket is (under the
    preview's own path, on an origin all previews share)."""
    query = {"autoconnect": "1", "resize": "scale", "reconnect": "1",
             "path": urlsplit(preview).path.lstrip("/") + "websockify"}  # fmt: skip
    if view_only:
        query["view_only"] = "1"
    return f"{preview}vnc.html?{urlencode(query)}"
