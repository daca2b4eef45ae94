"""The Network page in a real browser (test_console.py's harness): an instance's egress policy
is shown, set (and reaches its running machine), a bad entry is refused with the gateway's
-32602 naming it and nothing changes, and a name the policy refuses shows on the machine's
timeline as an egress-denied event."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import FleetUp, ok
from tests.e2e.test_console import WAIT_MS, page, sign_in

__all__ = ["page"]
#: A name the policy below refuses: the platform's DNS proxy answers NXDOMAIN without asking
#: anyone, so nothing leaves the machine.
REFUSED_NAME = "blocked.example.test"
RESOLVE = f"import socket; socket.gethostbyname({REFUSED_NAME!r})"


@pytest.mark.timeout(300)
def test_set_a_network_policy_and_see_a_refusal_on_the_timeline(
    shared_fleet_up: FleetUp, page: Page
) -> None:
    up = shared_fleet_up
    expect.set_options(timeout=WAIT_MS)
    iid = json.loads(ok(up.cli("--json", "instances", "create", "walled")))["id"]
    ok(up.cli("machines", "create", "--instance", iid, "--wait", timeout=180))
    mid = json.loads(ok(up.cli("--json", "machines", "list", "--instance", iid)))[0]["id"]

    sign_in(page, up)
    page.get_by_test_id("nav-instances").click()
    row = page.locator(f'[data-testid=instance-row][data-instance-id="{iid}"]')
    row.get_by_test_id("instance-network").click()
    expect(page.get_by_test_id("network-instance")).to_have_value(iid)
    expect(page.get_by_test_id("network-default")).to_have_text("allow")  # the default policy
    expect(page.get_by_test_id("network-allow-list")).to_have_text("none")

    page.get_by_test_id("network-default-select").select_option("deny")
    page.get_by_test_id("network-allow").fill("pypi.org\n  *.example.org:443\n\n10.9.0.0/16")
    page.get_by_test_id("network-deny").fill("192.0.2.0/24")
    page.get_by_test_id("network-save").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Saved the network policy of walled")
    expect(page.get_by_test_id("network-default")).to_have_text("deny")
    items = page.get_by_test_id("network-allow-list").locator("li")
    expect(items).to_have_text(["pypi.org", "*.example.org:443", "10.9.0.0/16"])
    expect(page.get_by_test_id("network-deny-list")).to_have_text("192.0.2.0/24")
    expect(page.get_by_test_id("network-applied")).to_have_text(
        "Applied to 1 of 1 running machine(s)."
    )
    assert "default: deny" in ok(up.cli("instances", "network", iid))

    # A bad entry: the gateway's error names it; the stored policy is the one before.
    page.get_by_test_id("network-allow").fill("pypi.org\nexample.test:99999")
    page.get_by_test_id("network-save").click()
    error = page.get_by_test_id("error")
    expect(error).to_contain_text("Error -32602")
    expect(error).to_contain_text("allow[1]")
    expect(error).to_contain_text("'example.test:99999'")
    page.reload()
    expect(page.get_by_test_id("network-allow-list").locator("li")).to_have_count(3)
    expect(page.get_by_test_id("network-allow")).to_have_value(
        "pypi.org\n*.example.org:443\n10.9.0.0/16"
    )

    # The machine asks for a name the policy refuses: its timeline says so.
    refused = up.cli("machines", "exec", mid, "--", "python3", "-c", RESOLVE)
    assert refused.returncode != 0, refused
    page.goto(f"{up.url}/#/machines/{mid}")
    denied = page.locator('[data-testid=timeline-event][data-type="egress-denied"]')
    expect(denied.first).to_contain_text(f"denied: {REFUSED_NAME}")
