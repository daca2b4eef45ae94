"""A normal sign-in with the admin token, then every page of the console, in a real browser:
nothing the browser reports as an error on the way. No console error (a refused inline style is
one: the CSP says style-src 'self'), no JavaScript error, no failed request and no response
with an error status (a missing favicon, a question the gateway has no answer for)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import requests
from playwright.sync_api import ConsoleMessage, Page, Request, Response, expect

from tests.browser import CHROMIUM, NETWORK_CHANGED, WAIT_MS, browser_page
from tests.e2e.conftest import FleetUp

#: How chromium reports a request that the page cancelled.
ABORTED = "net::ERR_ABORTED"
#: The pages of the sidebar an admin sees, by their link's test id, and each one's heading.
PAGES = [
    ("nav-machines", "Machines"),
    ("nav-instances", "Instances"),
    ("nav-env", "Env vars"),
    ("nav-network", "Network"),
    ("nav-tokens", "Access tokens"),
    ("nav-codemode", "Codemode"),
    ("nav-hosts", "Hosts"),
    ("nav-audit", "Audit log"),
]


def watch(page: Page, problems: list[str]) -> None:
    """Append to ``problems`` whatever the browser reports as an error from now on."""

    def console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            # A load that failed names its URL only here (the browser's own, e.g. the icon's).
            problems.append(f"console error: {msg.text} ({msg.location.get('url')})")

    def failed(request: Request) -> None:
        # Dropped by chromium because an address changed on the host (tests/browser.py): the
        # load is made again; the host's doing, not the console's. Aborted: the console itself
        # ended it (a page left ends its event streams), nothing failed.
        if request.failure is not None and not any(
            ok in request.failure for ok in (NETWORK_CHANGED, ABORTED)
        ):
            problems.append(f"failed {request.method} {request.url}: {request.failure}")

    def response(resp: Response) -> None:
        if resp.status >= 400:
            problems.append(f"{resp.status} {resp.request.method} {resp.url}")

    page.on("console", console)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("requestfailed", failed)
    page.on("response", response)


@pytest.mark.timeout(300)
def test_every_page_after_a_normal_sign_in_has_no_console_error_or_failed_request(
    shared_fleet_up: FleetUp, tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"the console test needs Debian's chromium at {CHROMIUM}")
    up = shared_fleet_up
    expect.set_options(timeout=WAIT_MS)
    instance = json.loads(up.cli("instances", "create", "walk", "--json").stdout)["id"]
    made = up.cli("machines", "create", "--instance", instance, "--wait", "--json", timeout=180)
    found = re.search(r"m-[0-9a-f]{16}", made.stdout)
    assert found, made.stdout + made.stderr
    mid = found.group(0)

    problems: list[str] = []
    with browser_page(tmp_path / "chromium-profile") as b:
        page = b.page
        watch(page, problems)
        page.goto(up.url)
        expect(page.get_by_test_id("signin-form")).to_be_visible()
        # The page names its icon, so the browser asks for no /favicon.ico; the icon is there.
        icons = page.locator("link[rel=icon]")
        if icons.count() != 1:
            problems.append(f"{icons.count()} <link rel=icon> in the console's page")
        else:
            got = requests.get(f"{up.url}{icons.get_attribute('href')}", timeout=30)
            if got.status_code != 200 or not got.headers["Content-Type"].startswith("image/"):
                problems.append(f"its icon: {got.status_code} {got.headers['Content-Type']}")
        page.get_by_test_id("signin-token").fill(up.token)
        page.get_by_test_id("signin-submit").click()
        expect(page.get_by_test_id("live-status")).to_have_attribute("data-state", "live")

        for testid, heading in PAGES:
            page.get_by_test_id(testid).click()
            expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
            expect(page.get_by_test_id("error")).to_have_count(0)
        # A machine's page, and a terminal on it (xterm.js draws with style rules of its own).
        page.get_by_test_id("nav-machines").click()
        page.locator(f'[data-testid=machine-row][data-machine-id="{mid}"]').get_by_test_id(
            "machine-link"
        ).click()
        expect(page.get_by_test_id("machine-id")).to_have_text(mid)
        expect(page.get_by_test_id("machine-runtime")).not_to_be_empty()
        page.get_by_test_id("terminal-new").click()
        expect(page.locator("[data-testid=terminal] .xterm-rows")).to_contain_text("$")
        page.get_by_test_id("nav-machines").click()
        expect(page.get_by_role("heading", name="Machines", exact=True)).to_be_visible()
        # At a laptop's 1280 px the machines' table fits its card: no sideways scroll.
        page.set_viewport_size({"width": 1280, "height": 800})
        table = page.locator("table.table").first
        over = table.evaluate("t => t.scrollWidth - t.parentElement.clientWidth")
        if over > 0:
            widths = table.evaluate(
                "t => [...t.querySelectorAll('th')].map(th => th.textContent + ' ' + "
                "th.getBoundingClientRect().width)"
            )
            problems.append(f"the machines table is {over} px wider than its card at 1280 px: "
                            f"{widths}")  # fmt: skip
        seen = "\n".join(b.seen[-120:])
    assert problems == [], "the console's walk met:\n" + "\n".join(problems) + "\n---\n" + seen
