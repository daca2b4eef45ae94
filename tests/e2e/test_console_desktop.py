"""The desktop in a real browser against `fleet up`: the console's Desktop panel shows the
machine's screen with the machine's browser at a page served in the machine (pixels looked
at), and Open live view shows the same page in noVNC's canvas in a new tab, on the machine's
preview origin, with no ticket left in its URL."""

from __future__ import annotations

import base64
import json

import pytest
from playwright.sync_api import Page, expect

from tests.browser import WAIT_MS
from tests.desktop_checks import BLUE, PAGE, SERVE, Shot
from tests.e2e.conftest import FleetUp
from tests.e2e.test_console import page  # noqa: F401 - the browser fixture
from tests.e2e.test_console_ports import ok, origin
from tests.screenshots import PAGE_SHOWN

PORT = 8765


def blue_pixels(png: bytes) -> int:
    """Pixels of the page's blue square (``BLUE``), at whatever scale the picture has."""
    shot = Shot.of({"image": base64.b64encode(png).decode()})
    r, g, b = (band.tobytes() for band in shot.image.split())
    near = [abs(pr - BLUE[0]) < 40 and abs(pg - BLUE[1]) < 40 and abs(pb - BLUE[2]) < 56
            for pr, pg, pb in zip(r, g, b, strict=True)]  # fmt: skip
    return sum(near)


@pytest.mark.timeout(300)
def test_the_desktop_panel_and_the_live_view_show_the_page(
    shared_fleet_up: FleetUp,
    page: Page,  # noqa: F811 - the fixture imported above
) -> None:
    up = shared_fleet_up
    expect.set_options(timeout=WAIT_MS)
    iid = json.loads(ok(up, "--json", "instances", "create", "desktop-demo"))["id"]
    ok(up, "machines", "create", "--instance", iid, "--wait", "--timeout", "60")
    mid = json.loads(ok(up, "machines", "list", "--instance", iid, "--json"))[0]["id"]
    ok(up, "machines", "write", mid, "site/index.html", stdin=PAGE)
    ok(up, "processes", "start", mid, "--tag", "site", "--cwd", "site", "--", *SERVE, str(PORT))
    shown = json.loads(ok(up, "--json", "machines", "desktop", mid, "--width", "1024",
                          "--height", "768", "--open", f"http://127.0.0.1:{PORT}/"))  # fmt: skip
    assert (shown["viewOnly"], shown["width"]) == (False, 1024)

    page.goto(up.url)
    page.get_by_test_id("signin-token").fill(up.token)
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_role("heading", name="Machines")).to_be_visible()
    page.goto(f"{up.url}/#/machines/{mid}")
    screen = page.get_by_test_id("desktop-screen")
    expect(screen).to_be_visible()
    page.wait_for_function(PAGE_SHOWN, arg=screen.element_handle())
    page.wait_for_function(
        "(img) => { const c = document.createElement('canvas');"
        " [c.width, c.height] = [img.naturalWidth, img.naturalHeight];"
        " const g = c.getContext('2d'); g.drawImage(img, 0, 0);"
        " const d = g.getImageData(0, 0, c.width, c.height).data;"
        " for (let i = 0; i < d.length; i += 4)"
        "   if (d[i] < 40 && d[i + 1] < 40 && d[i + 2] > 200) return true; return false; }",
        arg=screen.element_handle(),
    )  # the page's blue square, in the panel's picture of the screen

    with page.context.expect_page() as opened:
        page.get_by_test_id("desktop-view").click()
    view = opened.value
    view.set_default_timeout(WAIT_MS)
    view.wait_for_load_state()
    canvas = view.locator("#noVNC_container canvas, canvas").first
    try:
        expect(canvas).to_be_visible()
    except AssertionError as exc:  # what noVNC's page says (its status: a refused connection)
        said = view.locator("body").inner_text(timeout=5_000)
        raise AssertionError(f"{exc}\nthe live view's page at {view.url} says: {said!r}") from None
    # noVNC draws the screen into its canvas once connected: the square shows there too.
    view.wait_for_function(
        "() => { const c = document.querySelector('canvas'); if (!c || !c.width) return false;"
        " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 0; i < d.length; i += 4)"
        "   if (d[i] < 40 && d[i + 1] < 40 && d[i + 2] > 200) n++; return n > 1000; }"
    )
    assert blue_pixels(canvas.screenshot()) > 1000
    assert origin(view.url) == f"http://{mid}-6080.localhost:{up.preview_port}"
    assert "fleet_ticket" not in view.url
