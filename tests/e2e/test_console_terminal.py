"""The console's Terminal on a machine page, in a real browser against `fleet up`: a new terminal
brought into view, a shell that echoes what is typed, under the console's CSP, and that is
still there, scrollback and all, in view where the page was scrolled, after a reload; what is
typed into a new terminal before its socket opened reaches it."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Page, Route, expect

from tests.e2e.conftest import FleetUp
from tests.e2e.test_console import WAIT_MS, page

__all__ = ["page"]


@pytest.mark.timeout(300)
def test_terminal_tab_types_echoes_and_survives_a_reload(
    shared_fleet_up: FleetUp,
    page: Page,
) -> None:
    up = shared_fleet_up
    expect.set_options(timeout=WAIT_MS)
    instance = json.loads(up.cli("instances", "create", "term", "--json").stdout)["id"]
    made = up.cli("machines", "create", "--instance", instance, "--wait", "--json", timeout=180)
    mid = re.search(r"m-[0-9a-f]{16}", made.stdout)
    assert mid, made.stdout + made.stderr
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else None)
    page.on("pageerror", lambda exc: refused.append(str(exc)))

    page.goto(up.url)
    page.get_by_test_id("signin-token").fill(up.token)
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_role("heading", name="Machines")).to_be_visible()
    page.goto(f"{up.url}/#/machines/{mid.group(0)}")
    # The button at the very bottom of the view (as a long list's scroll can leave the page), the
    # new terminal below the fold: opening it brings it into view, where xterm.js draws it.
    new_terminal = page.get_by_test_id("terminal-new")
    expect(new_terminal).to_be_visible()
    new_terminal.evaluate(
        "b => scrollTo(0, b.getBoundingClientRect().bottom + scrollY - innerHeight)"
    )
    new_terminal.click()
    expect(page.get_by_test_id("terminal")).to_be_in_viewport()
    rows = page.locator("[data-testid=terminal] .xterm-rows")
    expect(rows).to_contain_text("$")  # the shell's prompt
    page.locator("[data-testid=terminal] .xterm").click()
    page.keyboard.type("echo hi-$((40+2))")
    page.keyboard.press("Enter")
    expect(rows).to_contain_text("hi-42")
    # xterm.js's own style rules never reach the CSP as inline styles (each would be a refusal
    # Chrome logs): they are applied as constructed style sheets, and the rows are laid out as
    # xterm.js wants.
    display = "getComputedStyle(document.querySelector('.xterm-rows span')).display"
    assert page.evaluate(display) == "inline-block"
    assert refused == []

    page.reload()
    expect(page.get_by_test_id("terminal-tab")).to_have_count(1)
    # The page comes back where it was scrolled (the terminal is below the fold of a fresh page),
    # and xterm.js draws a terminal only while it is in view.
    expect(page.get_by_test_id("terminal")).to_be_in_viewport()
    rows = page.locator("[data-testid=terminal] .xterm-rows")
    expect(rows).to_contain_text("hi-42")  # the scrollback, replayed by the machine
    page.locator("[data-testid=terminal] .xterm").click()
    page.keyboard.type("echo again-$((6*7))")
    page.keyboard.press("Enter")
    expect(rows).to_contain_text("again-42")

    # Typed into a new terminal before its socket has opened (its ticket held back until
    # then): nothing is lost.
    held: list[Route] = []

    def hold_ticket(route: Route) -> None:
        if '"events.ticket"' in (route.request.post_data or ""):
            held.append(route)
        else:
            route.continue_()

    page.route("**/rpc", hold_ticket)
    with page.expect_request(lambda r: '"events.ticket"' in (r.post_data or "")):
        page.get_by_test_id("terminal-new").click()
    tabs = page.get_by_test_id("terminal-tab")
    expect(tabs).to_have_count(2)
    expect(tabs.nth(1)).to_have_attribute("aria-selected", "true")
    page.locator("[data-testid=terminal] .xterm").click()
    page.keyboard.type("echo early-$((2+3))")
    page.keyboard.press("Enter")
    for route in held:
        route.continue_()
    page.unroute("**/rpc", hold_ticket)
    expect(rows).to_contain_text("early-5")
    assert page.get_by_test_id("terminal-error").count() == 0
