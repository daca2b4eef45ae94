"""The fake daemon's desktop: no display runs; its state is a record, each action is recorded,
and a screenshot is a one-colour PNG of the display's size (the gateway's rules are what is
tested: the real display is tests/integration/test_desktop.py's)."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field

from PIL import Image

from contracts.daemon import desktop as dd
from contracts.errors import DesktopNotRunning
from contracts.rpc.jsonrpc import NoParams, Router


@dataclass
class FakeDesktop:
    info: dd.DesktopInfo = field(
        default_factory=lambda: dd.DesktopInfo(running=False, width=0, height=0, dpi=0)
    )
    #: Every action, oldest first, and every URL opened.
    actions: list[dd.Action] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)

    def register(self, r: Router[None]) -> None:
        r.register(dd.DESKTOP_START, self.start)
        r.register(dd.DESKTOP_STOP, self.stop)
        r.register(dd.DESKTOP_GET, self.get)
        r.register(dd.DESKTOP_SCREENSHOT, self.screenshot)
        r.register(dd.DESKTOP_ACT, self.act)
        r.register(dd.DESKTOP_OPEN, self.open)

    async def start(self, p: dd.DesktopStartParams, _: None) -> dd.DesktopInfo:
        if not self.info.running:
            self.info = dd.DesktopInfo(running=True, width=p.width, height=p.height, dpi=p.dpi,
                                       display=":0", browser=True, view_port=dd.VIEW_PORT,
                                       view_only_port=dd.VIEW_ONLY_PORT)  # fmt: skip
        return self.info

    async def stop(self, _: NoParams, __: None) -> dd.DesktopInfo:
        self.info = dd.DesktopInfo(running=False, width=0, height=0, dpi=0)
        return self.info

    async def get(self, _: NoParams, __: None) -> dd.DesktopInfo:
        return self.info

    async def screenshot(self, p: dd.ScreenshotParams, _: None) -> dd.Screenshot:
        self._need()
        w, h = round(self.info.width * p.scale), round(self.info.height * p.scale)
        out = io.BytesIO()
        Image.new("RGB", (w, h), (255, 255, 255)).save(out, "PNG")
        return dd.Screenshot(image=base64.b64encode(out.getvalue()).decode(), format="png",
                             width=w, height=h, screen_width=self.info.width,
                             screen_height=self.info.height)  # fmt: skip

    async def act(self, p: dd.ActParams, _: None) -> dd.ActResult:
        self._need()
        self.actions += p.actions
        shot = None if p.screenshot is None else await self.screenshot(p.screenshot, None)
        return dd.ActResult(done=len(p.actions), x=0, y=0, screenshot=shot)

    async def open(self, p: dd.OpenParams, _: None) -> dd.Opened:
        self._need()
        self.opened.append(p.url)
        return dd.Opened(url=p.url)

    def _need(self) -> None:
        if not self.info.running:
            raise DesktopNotRunning("the machine's display does not run")
