"""Previews in a real browser against `fleet up`: the console's Ports panel lists a server
started in the machine, and Open shows its page in a new tab on an origin of the preview's
own, with neither the token nor the ticket left in the tab's URL; a hostile machine's page
neither breaks another tenant's preview nor sets a cookie for the console."""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.conftest import FleetUp
from tests.e2e.test_console import WAIT_MS, page  # noqa: F401 - the browser fixture
from tests.integration.test_ports import SERVERS

HELLO = "hello from the machine"


def ok(up: FleetUp, *args: str, stdin: str | None = None) -> str:
    done = up.cli(*args, stdin=stdin)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def serving(up: FleetUp, instance: str) -> tuple[str, int]:
    """A ready machine of a new instance (a tenant of its own), an HTTP server listening in it."""
    iid = json.loads(ok(up, "--json", "instances", "create", instance))["id"]
    ok(up, "machines", "create", "--instance", iid, "--wait", "--timeout", "60")
    mid = json.loads(ok(up, "machines", "list", "--instance", iid, "--json"))[0]["id"]
    ok(up, "machines", "write", mid, "servers.py", stdin=SERVERS.read_text())
    ok(up, "processes", "start", mid, "--tag", "http", "--", "python3", "servers.py", "http")
    deadline = time.monotonic() + 30
    # It says the port it bound once it listens; each check is a CLI run.
    while not (said := ok(up, "processes", "logs", mid, "--tag", "http")).startswith("listening"):
        assert time.monotonic() < deadline, "the server never listened"
    return mid, int(said.split()[1])


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.mark.timeout(240)
def test_ports_panel_lists_a_server_and_opens_its_preview(
    shared_fleet_up: FleetUp,
    page: Page,  # noqa: F811 - the fixture imported above
) -> None:
    up = shared_fleet_up
    expect.set_options(timeout=WAIT_MS)
    mid, port = serving(up, "ports-demo")
    # A code context's kernel runs in the machine too: its own ports are the platform's.
    ok(up, "machines", "code", "run", mid, "--", "1 + 1")
    page.goto(up.url)
    page.get_by_test_id("signin-token").fill(up.token)
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_role("heading", name="Machines")).to_be_visible()
    page.goto(f"{up.url}/#/machines/{mid}")
    row = page.locator(f'[data-testid=port-row][data-port="{port}"]')
    expect(row).to_be_visible()
    expect(page.get_by_test_id("port-row")).to_have_count(1)  # the server's only
    with page.context.expect_page() as opened:
        row.get_by_test_id("port-open").click()
    preview = opened.value
    preview.wait_for_load_state()
    expect(preview.locator("body")).to_contain_text(HELLO)
    # An origin of that port's own, on the preview listener; no ticket, no token in the URL.
    assert preview.url == f"http://{mid}-{port}.localhost:{up.preview_port}/"
    assert origin(preview.url) != origin(page.url)
    assert preview.evaluate("sessionStorage.length") == 0


def visit(context: BrowserContext, url: str) -> Page:
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    tab.goto(url)
    return tab


@pytest.mark.timeout(300)
def test_a_hostile_page_breaks_no_other_preview_and_sets_no_cookie_for_the_console(
    shared_fleet_up: FleetUp,
    page: Page,  # noqa: F811 - the fixture imported above
) -> None:
    """Machine B's page sets the platform's preview cookie for every machine's previews and
    for the whole origin, by its headers and by script (for every host under ``localhost``
    too), and cookies of its own. Machine A's preview, of another tenant, still opens with the
    cookie it had and with a fresh ticket; the console's origin has no cookie at all."""
    up = shared_fleet_up
    expect.set_options(timeout=WAIT_MS)
    a, a_port = serving(up, "tenant-a")
    b, b_port = serving(up, "tenant-b")
    context = page.context
    page.goto(up.url)  # the console, whose origin must get nothing
    a_url = ok(up, "machines", "preview", a, str(a_port)).strip()
    a_tab = visit(context, a_url)
    expect(a_tab.locator("body")).to_contain_text(HELLO)
    a_page = a_tab.url  # the ticket is gone from it
    assert origin(a_page) != up.url

    b_url = ok(up, "machines", "preview", b, str(b_port)).strip()
    b_tab = visit(context, b_url)
    expect(b_tab.locator("body")).to_contain_text(HELLO)
    b_tab.goto(b_tab.url.split("?", 1)[0] + "plant")
    expect(b_tab).to_have_title("planted")  # its script ran

    a_tab.goto(a_page)  # the cookie A had, beside whatever B planted
    expect(a_tab.locator("body")).to_contain_text(HELLO)
    again = visit(context, ok(up, "machines", "preview", a, str(a_port)).strip())
    expect(again.locator("body")).to_contain_text(HELLO)
    assert context.cookies(up.url) == []
    planted = [c for c in context.cookies(a_page) if c["value"] != "script"]
    assert [c["name"] for c in planted] == ["fleet_preview"], planted  # A's own, only
    assert origin(b_tab.url) not in (up.url, origin(a_page))
