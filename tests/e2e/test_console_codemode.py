"""The console's Codemode page in a real browser (Playwright, Debian's chromium) against
`fleet up`: a run's events show live, its result card, Cancel, and the stubs viewer."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from contracts.errors import NotFound
from tests.e2e.conftest import FleetUp
from tests.e2e.test_console import WAIT_MS, page  # noqa: F401 - the fixture

CODE = """\
print("hello from the page")
listed = await fleet.instances.list()
try:
    await fleet.machines.get(machineId="m-0000000000000000")
except ToolError as e:
    missing = e.code
{"missing": missing, "instances": len(listed["instances"])}
"""
SLOW = 'print("waiting", flush=True)\nimport time\ntime.sleep(120)\n'


def sign_in(page: Page, up: FleetUp) -> None:  # noqa: F811
    page.goto(up.url)
    page.get_by_test_id("signin-token").fill(up.token)
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_role("heading", name="Machines")).to_be_visible()


@pytest.mark.timeout(300)
def test_codemode_page_runs_streams_cancels_and_shows_stubs(
    shared_fleet_up: FleetUp,
    page: Page,  # noqa: F811
) -> None:
    expect.set_options(timeout=WAIT_MS)
    sign_in(page, shared_fleet_up)
    page.get_by_test_id("nav-codemode").click()
    expect(page.get_by_role("heading", name="Codemode")).to_be_visible()

    # A run: every event in the log, then the result card.
    page.get_by_test_id("codemode-code").fill(CODE)
    page.get_by_test_id("codemode-run").click()
    expect(page.get_by_test_id("codemode-status")).to_have_text("ok")
    events = page.get_by_test_id("codemode-event")
    types = [events.nth(i).get_attribute("data-type") for i in range(events.count())]
    assert types[0] == "started", types
    assert types[-1] == "result", types
    assert {"log", "toolCall", "toolResult"} <= set(types), types
    expect(page.locator("[data-testid=codemode-event][data-type=log]")).to_contain_text(
        "hello from the page"
    )
    expect(page.get_by_test_id("codemode-value")).to_contain_text(f'"missing": {NotFound.code}')
    expect(page.get_by_test_id("codemode-logs")).to_have_text("hello from the page")

    # Live: the first log line shows while the run still runs; Cancel ends it.
    page.get_by_test_id("codemode-code").fill(SLOW)
    page.get_by_test_id("codemode-run").click()
    expect(page.locator("[data-testid=codemode-event][data-type=log]")).to_contain_text("waiting")
    expect(page.get_by_test_id("codemode-running")).to_be_visible()
    page.get_by_test_id("codemode-cancel").click()
    expect(page.get_by_test_id("codemode-status")).to_have_text("cancelled")
    expect(page.locator("[data-testid=codemode-event][data-type=cancelled]")).to_have_count(1)
    expect(page.get_by_test_id("codemode-cancel")).to_be_disabled()

    # A syntax error is the run's error, naming the line.
    page.get_by_test_id("codemode-code").fill("x = 1\nif x\n")
    page.get_by_test_id("codemode-run").click()
    expect(page.get_by_test_id("codemode-status")).to_have_text("error")
    expect(page.get_by_test_id("codemode-error")).to_contain_text("line 2")

    # Stubs: one provider at a time, Python text.
    page.get_by_test_id("codemode-describe").click()
    expect(page.get_by_test_id("codemode-stubs-provider")).to_have_value("fleet")
    expect(page.get_by_test_id("codemode-stubs")).to_contain_text("async def")
