"""`fleet machines desktop|screenshot`: the machine's desktop.

desktop starts the machine's display if it does not run and opens its live view (noVNC, on the
machine's preview) in this computer's browser, or prints its URL (``--print``): a single-use
ticket, as a preview's; it takes input if you may run commands in the machine. screenshot
writes the screen to a file (PNG or JPEG, by its name's suffix).
"""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import TYPE_CHECKING

from fleet.cli.common import SubAction, command, emit
from fleet.cli.stop import ensure_started

if TYPE_CHECKING:
    from contracts.daemon.desktop import ImageFormat
    from fleet.client import FleetClient

Args = argparse.Namespace


def register(g: SubAction) -> None:
    d = command(g, "desktop", _desktop,
                "start the display if needed, open its live view in a browser")  # fmt: skip
    d.add_argument("machine_id")
    d.add_argument("--width", type=int, help="the display's width, at its first start (1280)")
    d.add_argument("--height", type=int, help="the display's height, at its first start (800)")
    d.add_argument("--open", metavar="URL", help="the display's browser at URL first")
    d.add_argument("--print", action="store_true", help="print the live view's URL, open none")
    s = command(g, "screenshot", _screenshot, "write the machine's screen to FILE (.png, .jpg)")
    s.add_argument("machine_id")
    s.add_argument("file", type=Path)
    s.add_argument("--scale", type=float, default=1.0, help="a share of each side (0-1]")


async def _desktop(c: FleetClient, a: Args) -> int:
    from contracts.ports import PREVIEW_TICKET_PARAM  # here: it loads the method specs

    await ensure_started(c, a.machine_id)
    size = {k: v for k, v in (("width", a.width), ("height", a.height)) if v is not None}
    info = await c.machines_desktop_start(a.machine_id, **size)
    if a.open:
        await c.machines_desktop_open(a.machine_id, a.open)
    view = await c.machines_desktop_view(a.machine_id)
    base = "" if view.url.startswith(("http://", "https://")) else c.url  # an own origin
    url = f"{base}{view.url}&{PREVIEW_TICKET_PARAM}={view.ticket}"
    if not a.print and not a.json:
        import webbrowser

        webbrowser.open(url)
    shown = {"url": url, "viewOnly": view.view_only, "width": info.width, "height": info.height}
    mode = " (view only)" if view.view_only else ""
    return emit(a, shown, lambda: f"{url}\n{info.width}x{info.height} display{mode}")


async def _screenshot(c: FleetClient, a: Args) -> int:
    fmt: ImageFormat = "jpeg" if a.file.suffix.lower() in (".jpg", ".jpeg") else "png"
    shot = await c.machines_desktop_screenshot(a.machine_id, format=fmt, scale=a.scale)
    a.file.write_bytes(base64.b64decode(shot.image))
    shown = {"file": str(a.file), "format": fmt, "width": shot.width, "height": shot.height}
    return emit(a, shown, lambda: f"{a.file}: {shot.width}x{shot.height} {fmt}")
