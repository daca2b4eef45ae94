"""The web console in a real browser: Playwright driving Debian's chromium, headless, against
`fleet up` as a user runs it. (docs/screenshots are made by tests/screenshots.py.)
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser import CHROMIUM, WAIT_MS, browser_page
from tests.e2e.conftest import FleetUp, ok

SECRET = "postgres://dev:s3cret@db:5432/app"
#: A command that prints a line, then waits for the test's file before its second one.
AWAIT_GO = (
    'echo first; i=0; while [ ! -e "$HOME/go" ] && [ $i -lt 1200 ]; do sleep 0.05; '
    "i=$((i+1)); done; echo second"
)


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"the console test needs Debian's chromium at {CHROMIUM}: "
            "apt-get install -y chromium (.ci/run installs it)"
        )
    with browser_page(tmp_path / "chromium-profile") as b:
        try:
            yield b.page
        finally:
            # What the page did: pytest shows it with a failing test only.
            print("\n".join(["--- the console's page:", *b.seen[-80:]]))
    assert b.errors == [], f"JavaScript errors in the console: {b.errors}"


def sign_in(page: Page, up: FleetUp) -> None:
    """Sign in with the admin token; back once the live event stream is up."""
    page.goto(up.url)
    page.get_by_test_id("signin-token").fill(up.token)
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_test_id("live-status")).to_have_attribute("data-state", "live")


def machine_row(page: Page, machine_id: str) -> Locator:
    return page.locator(f'[data-testid=machine-row][data-machine-id="{machine_id}"]')


def confirm(page: Page) -> None:
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("confirm-dialog")).to_have_count(0)


@pytest.mark.timeout(300)
def test_console_drives_a_machine_from_sign_in_to_rebuild(fleet_up: FleetUp, page: Page) -> None:
    """On a `fleet up` of its own (``fleet_up``, not the shared one): it counts every instance
    and machine the admin sees and the host's running machines, sets platform env vars every
    tenant's machines get, and drains the host."""
    up = fleet_up
    expect.set_options(timeout=WAIT_MS)

    # Sign-in: a wrong token is refused inline, the admin token gets in.
    page.goto(up.url)
    expect(page.get_by_test_id("signin-form")).to_be_visible()
    page.get_by_test_id("signin-token").fill("not-a-token")
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_test_id("signin-error")).to_contain_text("1001")
    page.get_by_test_id("signin-token").fill(up.token)
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_role("heading", name="Machines")).to_be_visible()
    expect(page.get_by_test_id("live-status")).to_have_attribute("data-state", "live")
    expect(page.get_by_test_id("role")).to_have_text("admin token")
    page.evaluate("window.__sameDocument = true")  # gone if anything reloads the page

    # Instances: create one.
    page.get_by_test_id("nav-instances").click()
    page.get_by_test_id("instance-name").fill("demo")
    page.get_by_test_id("instance-create").click()
    iid = page.get_by_test_id("new-instance-id").inner_text()
    assert re.fullmatch(r"i-[0-9a-f]{16}", iid)
    expect(page.locator(f'[data-testid=instance-row][data-instance-id="{iid}"]')).to_be_visible()

    # Env vars: a platform var, an instance var, and one set in both scopes (the instance wins).
    page.get_by_test_id("nav-env").click()
    page.get_by_test_id("env-instance").select_option(iid)
    for scope, name, value in [
        ("platform", "HTTP_TIMEOUT", "30"),
        ("platform", "GREETING", "hello from the platform"),
        ("instance", "GREETING", "hello from demo"),
        ("instance", "DATABASE_URL", SECRET),
    ]:
        page.get_by_test_id("env-scope").select_option(scope)
        page.get_by_test_id("env-name").fill(name)
        page.get_by_test_id("env-value").fill(value)
        page.get_by_test_id("env-set").click()
        expect(page.get_by_test_id("notice")).to_contain_text(f"Set {name} ({scope})")
    rows = page.get_by_test_id("env-row")
    expect(rows).to_have_count(3)
    expect(page.locator("[data-testid=env-row][data-name=GREETING]")).to_have_attribute(
        "data-wins", "instance"
    )
    expect(page.locator("[data-testid=env-row][data-name=HTTP_TIMEOUT]")).to_have_attribute(
        "data-wins", "platform"
    )
    expect(page.get_by_test_id("env-table")).not_to_contain_text("s3cret")  # masked
    page.get_by_test_id("env-reveal").click()
    expect(page.get_by_test_id("env-table")).to_contain_text(SECRET)
    page.get_by_test_id("env-reveal").click()
    page.get_by_test_id("env-scope").select_option("platform")
    page.get_by_test_id("env-name").fill("UNWANTED")
    page.get_by_test_id("env-value").fill("x")
    page.get_by_test_id("env-set").click()
    expect(rows).to_have_count(4)
    page.locator("[data-testid=env-row][data-name=UNWANTED]").get_by_test_id(
        "env-unset-platform"
    ).click()
    expect(page.get_by_test_id("notice")).to_contain_text("Unset UNWANTED (platform)")
    expect(rows).to_have_count(3)

    # Machines: create one; its status follows the event stream until ready, no reload.
    page.get_by_test_id("nav-machines").click()
    page.get_by_test_id("create-machine-instance").select_option(iid)
    page.get_by_test_id("create-machine").click()
    expect(page.get_by_test_id("notice")).to_contain_text("created")
    expect(page.get_by_test_id("machine-row")).to_have_count(1)
    first_id = page.get_by_test_id("machine-row").get_attribute("data-machine-id")
    assert first_id is not None
    expect(machine_row(page, first_id).get_by_test_id("machine-status")).to_have_text("ready")
    assert page.evaluate("window.__sameDocument") is True

    # Machine detail: the timeline, a command, the effective .env (masked, which scope wins).
    machine_row(page, first_id).get_by_test_id("machine-link").click()
    expect(page.get_by_test_id("machine-id")).to_have_text(first_id)
    # The host whose provisioner started it: fleet up's one host, named after this one.
    expect(page.get_by_test_id("machine-host")).to_have_text(socket.gethostname())
    timeline = page.get_by_test_id("timeline-event")
    # Wait for "ready" itself, not for it to be last: the env edits above are pushed live
    # (debounced) to machines running by then, and a machine from the warm pool is, so an
    # env-pushed may come after its setup-pushed (even after ready); never before.
    expect(page.locator("[data-testid=timeline-event][data-type=ready]")).to_have_count(1)
    types = [t.get_attribute("data-type") for t in timeline.all()]
    if "env-pushed" in types:
        assert types.index("env-pushed") > types.index("setup-pushed")
    pipeline = [t for t in types if t != "env-pushed"]
    assert pipeline == ["created", "provisioned", "daemon-status-reported", "setup-pushed", "ready"]
    effective = page.get_by_test_id("effective-env")
    expect(effective.locator("[data-name=GREETING]")).to_have_attribute("data-wins", "instance")
    expect(effective).not_to_contain_text("s3cret")
    page.get_by_test_id("exec-command").fill("sh -c 'ls -l .fleet/.env; echo done >&2; exit 3'")
    expect(page.get_by_test_id("exec-argv")).to_have_text(
        '["sh","-c","ls -l .fleet/.env; echo done >&2; exit 3"]'
    )
    page.get_by_test_id("exec-run").click()
    expect(page.get_by_test_id("exec-exit-code")).to_have_text("3")
    expect(page.get_by_test_id("exec-stdout")).to_contain_text("-rw------- ")
    expect(page.get_by_test_id("exec-stderr")).to_have_text("done\n")
    # Live: the first line shows while the command still runs (one assertion on both): it
    # ends once the test has seen that line and made the file it awaits (bounded: 60 s).
    page.get_by_test_id("exec-command").fill(f"sh -c '{AWAIT_GO}'")
    page.get_by_test_id("exec-run").click()
    expect(page.get_by_test_id("exec-output")).to_contain_text("Running…first")
    ok(up.cli("machines", "exec", first_id, "--", "sh", "-c", 'touch "$HOME/go"'))
    expect(page.get_by_test_id("exec-exit-code")).to_have_text("0")
    expect(page.get_by_test_id("exec-stdout")).to_have_text("first\nsecond\n")
    page.get_by_test_id("action-refresh-env").click()
    expect(page.get_by_test_id("notice")).to_contain_text(".env pushed to 1 of 1")

    # Rebuild from the Machines page (in the row's menu): the old machine is archived, and
    # hidden until "Show archived" is ticked; a new one turns ready.
    page.get_by_test_id("nav-machines").click()
    expect(machine_row(page, first_id).get_by_test_id("machine-runtime")).to_have_text("namespaces")
    expect(machine_row(page, first_id).get_by_test_id("action-rebuild")).to_be_hidden()
    machine_row(page, first_id).get_by_test_id("action-menu").locator("summary").click()
    machine_row(page, first_id).get_by_test_id("action-rebuild").click()
    confirm(page)
    expect(page.get_by_test_id("notice")).to_contain_text("Rebuilding")
    expect(machine_row(page, first_id)).to_have_count(0)
    expect(page.get_by_test_id("machine-row")).to_have_count(1)
    second = page.locator(f"[data-testid=machine-row]:not([data-machine-id='{first_id}'])")
    expect(second.get_by_test_id("machine-status")).to_have_text("ready")
    page.get_by_test_id("show-archived").check()
    expect(machine_row(page, first_id).get_by_test_id("machine-status")).to_have_text("archived")
    expect(page.get_by_test_id("machine-row")).to_have_count(2)
    expect(machine_row(page, first_id).get_by_test_id("action-rebuild")).to_be_disabled()
    assert page.evaluate("window.__sameDocument") is True

    page.get_by_test_id("nav-instances").click()
    expect(page.get_by_test_id("instance-row")).to_have_count(1)

    # Hosts (admin): fleet up's one host runs the second machine; drain it and undo that.
    page.get_by_test_id("nav-hosts").click()
    host_row = page.locator(f'[data-testid=host-row][data-host-id="{socket.gethostname()}"]')
    expect(page.get_by_test_id("host-row")).to_have_count(1)
    expect(host_row.get_by_test_id("host-state")).to_have_text("active")
    expect(host_row.get_by_test_id("host-running")).to_have_text("1")
    host_row.get_by_test_id("host-drain").click()
    expect(host_row.get_by_test_id("host-state")).to_have_text("draining")
    host_row.get_by_test_id("host-drain").click()
    expect(host_row.get_by_test_id("host-state")).to_have_text("active")

    # Audit log (admin): the drain and its undo, newest first, found by their method.
    page.get_by_test_id("nav-audit").click()
    expect(page.get_by_test_id("audit-row").first).to_be_visible()
    page.get_by_test_id("audit-since").select_option("3600")
    page.get_by_test_id("audit-filter-method").fill("hosts.drain")
    page.get_by_test_id("audit-apply").click()
    drains = page.locator("[data-testid=audit-row][data-method='hosts.drain']")
    expect(drains).to_have_count(2)
    expect(page.get_by_test_id("audit-row")).to_have_count(2)

    # Access tokens: the secret is shown once; revoking marks the token revoked.
    page.get_by_test_id("nav-tokens").click()
    page.get_by_test_id("token-name").fill("ci-runner")
    page.get_by_test_id("token-scope").select_option(iid)
    page.get_by_test_id("token-create").click()
    secret = page.get_by_test_id("token-secret").inner_text()
    assert len(secret) >= 20
    token_row = page.locator("[data-testid=token-row][data-name=ci-runner]")
    expect(token_row.get_by_test_id("token-state")).to_have_text("active")
    expect(token_row.get_by_test_id("token-last-used")).to_have_text("never")
    page.get_by_test_id("token-secret-dismiss").click()
    expect(page.get_by_test_id("token-secret")).to_have_count(0)

    # Signed in with that instance token: its instance's machines, live through per-machine
    # streams. Revoking the token it signed in with sends the console back to sign-in (401).
    page.get_by_test_id("signout").click()
    page.get_by_test_id("signin-token").fill(secret)
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_test_id("role")).to_have_text("instance token")
    expect(page.get_by_test_id("machine-row")).to_have_count(2)
    expect(page.get_by_test_id("nav-hosts")).to_have_count(0)  # the admin's only
    expect(page.get_by_test_id("live-status")).to_have_attribute("data-state", "live")
    page.get_by_test_id("nav-tokens").click()
    expect(token_row.get_by_test_id("token-last-used")).not_to_have_text("never")  # just now
    token_row.get_by_test_id("token-revoke").click()
    confirm(page)
    expect(page.get_by_test_id("signin-form")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("401")
    page.get_by_test_id("signin-token").fill(up.token)
    page.get_by_test_id("signin-submit").click()
    page.get_by_test_id("nav-tokens").click()
    expect(token_row.get_by_test_id("token-state")).to_contain_text("revoked")
