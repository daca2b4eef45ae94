"""The console signs in through a real OpenID provider (tests/oidc_provider.py) in a real
browser: the provider's login and consent pages, back to the console with a session cookie, the
user's instances, and sign-out ending the session on the gateway."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.e2e.conftest import FleetUp, ok, start_fleet_up
from tests.e2e.test_console import WAIT_MS, page
from tests.e2e.test_console_walk import watch
from tests.oidc_provider import ADMIN_GROUP, CLIENT_ID, CLIENT_SECRET

#: The provider's group of auditors (tests/oidc/provider.mjs: audrey is in it).
AUDITOR_GROUP = "fleet-auditors"

__all__ = ["page"]


@pytest.fixture(scope="module")
def fleet_up_oidc(tmp_path_factory: pytest.TempPathFactory, oidc_issuer: str) -> Iterator[FleetUp]:
    """A `fleet up` of this module's (configured with the OpenID provider), shared by its tests:
    each signs in as a user of its own and counts only what that user did or may see, so that
    either passes whether the other ran before it or not."""
    env = {
        "FLEET_OIDC_ISSUER": oidc_issuer,
        "FLEET_OIDC_CLIENT_ID": CLIENT_ID,
        "FLEET_OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "FLEET_OIDC_ADMIN_GROUPS": ADMIN_GROUP,
        "FLEET_OIDC_AUDITOR_GROUPS": AUDITOR_GROUP,
    }
    up = start_fleet_up(tmp_path_factory.mktemp("oidc") / "data", env=env)
    yield up
    assert up.stop() == 0


@pytest.mark.timeout(300)
def test_a_user_signs_in_with_the_provider_sees_their_instances_and_signs_out(
    fleet_up_oidc: FleetUp, page: Page
) -> None:
    up = fleet_up_oidc
    expect.set_options(timeout=WAIT_MS)
    for args in (["instances", "create", "carols"], ["instances", "create", "not-carols"],
                 ["users", "create", "carol@example.com"]):  # fmt: skip
        done = up.cli(*args)
        assert done.returncode == 0, done.stderr
    carols = up.cli("instances", "list", "--json")
    iid = next(i["id"] for i in json.loads(carols.stdout) if i["name"] == "carols")
    assert up.cli("members", "set", iid, "carol@example.com", "developer").returncode == 0

    problems: list[str] = []
    watch(page, problems)
    page.goto(up.url)
    expect(page.get_by_test_id("signin-provider")).to_be_visible()
    provider_sign_in(page, "carol")
    expect(page.get_by_role("heading", name="Machines")).to_be_visible()
    page.reload()  # the session resumed from its cookie
    expect(page.get_by_role("heading", name="Machines")).to_be_visible()
    expect(page.get_by_test_id("role")).to_have_text("member")
    expect(page.get_by_test_id("nav-audit")).to_have_count(0)  # a member reads no audit log
    page.get_by_test_id("nav-instances").click()
    expect(page.get_by_test_id("instance-row")).to_have_count(1)
    expect(page.locator(f'[data-testid=instance-row][data-instance-id="{iid}"]')).to_be_visible()

    (cookie,) = [c for c in page.context.cookies() if c["name"] == "fleet_session"]
    assert cookie["httpOnly"]
    page.get_by_test_id("signout").click()
    expect(page.get_by_test_id("signin-form")).to_be_visible()
    page.reload()  # signed out: nothing asks about a session the browser no longer has
    expect(page.get_by_test_id("signin-provider")).to_be_visible()
    # The console's own requests and errors (the provider's pages are another origin's).
    assert [p for p in problems if up.url in p] == []
    me = requests.get(f"{up.url}/auth/me", cookies={"fleet_session": cookie["value"]}, timeout=10)
    assert me.status_code == 401  # the session ended on the gateway, not only in the browser


def provider_sign_in(page: Page, login: str) -> None:
    """From the console's sign-in page, through the provider's login and consent pages."""
    page.get_by_test_id("signin-provider").click()
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill("any")
    page.locator("button[type=submit]").click()
    page.get_by_role("button", name="Continue").click()  # the provider's consent


@pytest.mark.timeout(300)
def test_an_auditor_reads_the_audit_log_in_the_console(fleet_up_oidc: FleetUp, page: Page) -> None:
    up = fleet_up_oidc
    expect.set_options(timeout=WAIT_MS)
    assert up.cli("env", "set", "AUDITED", "1").returncode == 0  # an entry to find
    page.goto(up.url)
    provider_sign_in(page, "audrey")  # in the provider's group of auditors
    expect(page.get_by_test_id("role")).to_have_text("auditor")
    page.get_by_test_id("nav-audit").click()
    row = page.locator('[data-testid=audit-row][data-method="env.set"]')
    expect(row).to_have_count(1)
    # Her own sign-in, once (another test's user may have signed in on this stack before).
    users = json.loads(ok(up.cli("--json", "users", "list")))
    audrey = next(u["id"] for u in users if u["email"] == "audrey@example.com")
    page.get_by_test_id("audit-filter-actor").fill(audrey)
    page.get_by_test_id("audit-apply").click()
    expect(page.locator('[data-testid=audit-row][data-method="auth.signIn"]')).to_have_count(1)
    expect(page.get_by_test_id("nav-hosts")).to_have_count(0)  # still no admin


@pytest.mark.timeout(300)
def test_a_refused_sign_in_is_a_page_with_a_way_back(fleet_up_oidc: FleetUp, page: Page) -> None:
    """A disabled user signs in with the provider: the browser lands on a page that says the
    sign-in was refused and why, whose link leads back to the console's sign-in."""
    up = fleet_up_oidc
    expect.set_options(timeout=WAIT_MS)
    for args in (["users", "create", "dave@example.com"], ["users", "disable", "dave@example.com"]):
        done = up.cli(*args)
        assert done.returncode == 0, done.stderr
    page.goto(up.url)
    provider_sign_in(page, "dave")
    expect(page.get_by_role("heading", name="Sign-in refused")).to_be_visible()
    expect(page.locator("body")).to_contain_text("user dave@example.com is disabled")
    assert "jsonrpc" not in page.content()
    page.get_by_role("link", name="Back to sign-in").click()
    expect(page.get_by_test_id("signin-provider")).to_be_visible()
