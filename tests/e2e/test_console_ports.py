"""The console's Ports panel in a real browser against `fleet up`: a server started in the
machine is listed, and Open shows its page in a new tab through the preview URL, with neither
the token nor the ticket left in the tab's URL."""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import Page, expect

from fleet.embedded import free_port
from tests.e2e.conftest import FleetUp
from tests.e2e.test_console import WAIT_MS, page  # noqa: F401 - the browser fixture
from tests.integration.test_ports import SERVERS


def ok(up: FleetUp, *args: str, stdin: str | None = None) -> str:
    done = up.cli(*args, stdin=stdin)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.timeout(240)
def test_ports_panel_lists_a_server_and_opens_its_preview(
    fleet_up: FleetUp,
    page: Page,  # noqa: F811 - the fixture imported above
) -> None:
    up = fleet_up
    expect.set_options(timeout=WAIT_MS)
    iid = json.loads(ok(up, "--json", "instances", "create", "ports-demo"))["id"]
    ok(up, "machines", "create", "--instance", iid, "--wait", "--timeout", "60")
    mid = json.loads(ok(up, "machines", "list", "--instance", iid, "--json"))[0]["id"]
    ok(up, "machines", "write", mid, "servers.py", stdin=SERVERS.read_text())
    port = free_port()
    ok(up, "processes", "start", mid, "--", "python3", "servers.py", "http", str(port))
    deadline = time.monotonic() + 30
    while str(port) not in ok(up, "machines", "ports", mid):  # each check is a CLI run
        assert time.monotonic() < deadline, "the server never listened"

    page.goto(up.url)
    page.get_by_test_id("signin-token").fill(up.token)
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_role("heading", name="Machines")).to_be_visible()
    page.goto(f"{up.url}/#/machines/{mid}")
    row = page.locator(f'[data-testid=port-row][data-port="{port}"]')
    expect(row).to_be_visible()
    with page.context.expect_page() as opened:
        row.get_by_test_id("port-open").click()
    preview = opened.value
    preview.wait_for_load_state()
    expect(preview.locator("body")).to_contain_text("hello from the machine")
    assert preview.url == f"{up.url}/machines/{mid}/ports/{port}/"  # no ticket, no token
    # The preview's tab does not share the console's storage: the token is not there.
    assert preview.evaluate("sessionStorage.length") == 0
