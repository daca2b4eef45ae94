"""A machine's CPU and memory in a real browser against `fleet up`: the machine page draws
both over the last hour (uPlot, vendored) from its samples, under the console's CSP."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import FleetUp
from tests.e2e.test_console import WAIT_MS, page  # noqa: F401 - the browser fixture
from tests.e2e.test_console_ports import ok


@pytest.mark.timeout(240)
def test_the_machine_page_draws_its_cpu_and_memory(
    shared_fleet_up: FleetUp,
    page: Page,  # noqa: F811 - the fixture imported above
) -> None:
    up = shared_fleet_up
    expect.set_options(timeout=WAIT_MS)
    iid = json.loads(ok(up, "--json", "instances", "create", "usage-demo"))["id"]
    ok(up, "machines", "create", "--instance", iid, "--wait", "--timeout", "60")
    mid = json.loads(ok(up, "machines", "list", "--instance", iid, "--json"))[0]["id"]
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else None)
    page.goto(up.url)
    page.get_by_test_id("signin-token").fill(up.token)
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_role("heading", name="Machines")).to_be_visible()
    page.goto(f"{up.url}/#/machines/{mid}")
    usage = page.get_by_test_id("machine-usage")
    expect(usage.get_by_test_id("usage-note")).to_contain_text(
        "samples, one every 5 s", timeout=60_000
    )
    for field in ("cpuCores", "memoryBytes"):
        chart = usage.get_by_test_id(f"usage-{field}")
        expect(chart.locator("canvas")).to_have_count(1)
        expect(chart.locator(".u-legend")).to_be_visible()
    assert not refused, refused
