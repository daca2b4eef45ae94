"""The desktop's scenario, shared by the tests of each runtime, the MCP tool's and the console's:
a page served in the machine, opened in the machine's browser, a button clicked and a field
typed into, each seen in the pixels of the next screenshot.

The page is built to be read by pixels: a blue square (``MARK``) whose place tells where the
page is on the screen (the browser's own bars are above it), which the button turns green;
a field whose text is black on white. At load the page paints the square green too when its
cookie says the button was clicked, so a reload shows whether the browser kept its cookies.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image

from contracts.daemon import desktop as dd
from fleet.client import FleetClient

PAGE = """<!doctype html>
<html><head><title>fleet desktop</title><style>
body { margin: 0; background: #ffffff; }
#go { position: absolute; left: 40px; top: 40px; width: 240px; height: 120px; font-size: 32px; }
#field { position: absolute; left: 40px; top: 220px; width: 560px; height: 80px;
         font-size: 48px; border: 2px solid #888888; outline: none; caret-color: transparent; }
#mark { position: absolute; left: 700px; top: 40px; width: 160px; height: 160px;
        background: #0000ff; }
</style></head><body>
<button id="go">Go</button>
<input id="field" autocomplete="off" spellcheck="false">
<div id="mark"></div>
<script>
const mark = document.getElementById("mark");
if (document.cookie.includes("clicked=yes")) mark.style.background = "#00ff00";
document.getElementById("go").onclick = () => {
  mark.style.background = "#00ff00";
  document.cookie = "clicked=yes; max-age=86400; path=/";
};
</script></body></html>
"""
#: Where the page's things are, from the square's top left corner.
BUTTON_FROM_MARK = (40 + 120 - 700, 40 + 60 - 40)
FIELD_FROM_MARK = (40 + 280 - 700, 220 + 40 - 40)
#: The field's inside (its text), from the square's top left corner: (dx, dy, width, height).
FIELD_BOX = (40 + 8 - 700, 220 + 8 - 40, 540, 64)
MARK_SIDE = 160
BLUE = (0, 0, 255)
GREEN = (0, 255, 0)


@dataclass(frozen=True)
class Shot:
    image: Image.Image

    @classmethod
    def of(cls, screenshot: dd.Screenshot | dict[str, Any]) -> Shot:
        data = screenshot.image if isinstance(screenshot, dd.Screenshot) else screenshot["image"]
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        image.load()
        return cls(image.convert("RGB"))

    def find(self, colour: tuple[int, int, int]) -> tuple[int, int] | None:
        """The top left corner of the square (``MARK_SIDE`` wide) of ``colour``, if shown."""
        w, h = self.image.size
        rgb = self.image.tobytes()

        def px(x: int, y: int) -> tuple[int, int, int]:
            i = (y * w + x) * 3
            return rgb[i], rgb[i + 1], rgb[i + 2]

        for y in range(0, h, 8):
            for x in range(0, w, 8):
                if _near(px(x, y), colour):
                    while x > 0 and _near(px(x - 1, y), colour):
                        x -= 1
                    while y > 0 and _near(px(x, y - 1), colour):
                        y -= 1
                    if _near(
                        px(min(w - 1, x + MARK_SIDE - 4), min(h - 1, y + MARK_SIDE - 4)), colour
                    ):
                        return x, y
        return None

    def mark(self) -> tuple[int, int] | None:
        return self.find(BLUE) or self.find(GREEN)

    def ink(self, mark: tuple[int, int]) -> int:
        """Dark pixels inside the field: its text."""
        return sum(self.field(mark).convert("L").histogram()[:64])

    def field(self, mark: tuple[int, int]) -> Image.Image:
        dx, dy, w, h = FIELD_BOX
        return self.image.crop((mark[0] + dx, mark[1] + dy, mark[0] + dx + w, mark[1] + dy + h))


def _near(p: tuple[int, int, int], q: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 24 for a, b in zip(p, q, strict=True))


def plus(mark: tuple[int, int], offset: tuple[int, int]) -> tuple[int, int]:
    return mark[0] + offset[0], mark[1] + offset[1]


async def until(take: Callable[[], Awaitable[Shot]], ok: Callable[[Shot], bool],
                timeout_s: float = 60.0) -> Shot:  # fmt: skip
    """The first screenshot ``ok`` accepts (the screen changes in its own time: a page loads, a
    click repaints); the last one's failure after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        shot = await take()
        if ok(shot):
            return shot
        if loop.time() > deadline:
            shot.image.save("/tmp/desktop-timeout.png")
            raise AssertionError("the screen never showed what was awaited "
                                 "(its last screenshot: /tmp/desktop-timeout.png)")  # fmt: skip
        await asyncio.sleep(0.2)


def blue_page(shot: Shot) -> bool:
    return shot.find(BLUE) is not None


def green_page(shot: Shot) -> bool:
    return shot.find(GREEN) is not None


SERVE = ["python3", "-m", "http.server", "--bind", "127.0.0.1"]
PORT = 8765


async def shot(stack: FleetClient, mid: str) -> Shot:
    return Shot.of(await stack.machines_desktop_screenshot(mid))


async def clicked_and_typed(
    stack: FleetClient, mid: str, text: str
) -> tuple[Shot, tuple[int, int]]:
    """The scenario on ``mid``: its screen once the click and the text show, and where the
    page's square is."""
    await stack.machines_desktop_start(mid, width=1024, height=768)
    await stack.write_file(mid, "site/index.html", PAGE)
    await stack.start_process(mid, [*SERVE, str(PORT)], cwd="site", tag="site")
    await stack.machines_desktop_open(mid, f"http://127.0.0.1:{PORT}/")
    await stack.machines_desktop_act(mid, [dd.Move(x=0, y=760)])
    page = await until(lambda: shot(stack, mid), blue_page, timeout_s=180)
    mark = page.mark()
    assert mark is not None
    before = page.ink(mark)
    bx, by = plus(mark, BUTTON_FROM_MARK)
    fx, fy = plus(mark, FIELD_FROM_MARK)
    actions: list[dd.Action] = [dd.Click(x=bx, y=by), dd.Click(x=fx, y=fy), dd.Type(text=text),
                                dd.Move(x=0, y=760)]  # fmt: skip
    await stack.machines_desktop_act(mid, actions)

    def both(s: Shot) -> bool:
        return green_page(s) and s.ink(mark) > before + 100

    return await until(lambda: shot(stack, mid), both, timeout_s=60), mark
