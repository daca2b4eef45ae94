"""The Env vars page's Secrets section in a real browser (test_console.py's harness): a secret
set with `fleet secrets set` (its value on stdin) is listed with its hosts, uses and last use;
one set on the page (its value in a password field, cleared once sent) joins it; a bad host is
refused with the gateway's -32602 naming the field; Delete removes one. No value ever reaches
the page."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import FleetUp, ok
from tests.e2e.test_console import WAIT_MS, confirm, page, sign_in

__all__ = ["page"]
CLI_VALUE = "ghp_cli0123456789abcdef"
PAGE_VALUE = "sk-page-0123456789"


@pytest.mark.timeout(300)
def test_secrets_are_listed_set_and_deleted_never_showing_a_value(
    shared_fleet_up: FleetUp, page: Page
) -> None:
    up = shared_fleet_up
    expect.set_options(timeout=WAIT_MS)
    iid = json.loads(ok(up.cli("--json", "instances", "create", "keyed")))["id"]
    ok(up.cli("secrets", "set", "GITHUB_TOKEN", "--instance", iid, "--host", "api.github.com",
              stdin=CLI_VALUE + "\n"))  # fmt: skip

    sign_in(page, up)
    page.get_by_test_id("nav-instances").click()
    row = page.locator(f'[data-testid=instance-row][data-instance-id="{iid}"]')
    row.get_by_role("link", name="Env vars").click()
    expect(page.get_by_test_id("env-instance")).to_have_value(iid)
    rows = page.get_by_test_id("secret-row")
    github = page.locator("[data-testid=secret-row][data-name=GITHUB_TOKEN]")
    expect(github.get_by_test_id("secret-hosts-cell")).to_have_text("api.github.com")
    expect(github).to_contain_text("Authorization: Bearer {value}")
    expect(github.get_by_test_id("secret-uses")).to_have_text("0")
    expect(github.get_by_test_id("secret-last-used")).to_have_text("never")

    expect(page.get_by_test_id("secret-value")).to_have_attribute("type", "password")
    page.get_by_test_id("secret-name").fill("OPENAI_API_KEY")
    page.get_by_test_id("secret-value").fill(PAGE_VALUE)
    page.get_by_test_id("secret-hosts").fill("api.openai.com, *.openai.com")
    page.get_by_test_id("secret-header").fill("X-Api-Key")
    page.get_by_test_id("secret-format").fill("{value}")
    page.get_by_test_id("secret-set").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Set OPENAI_API_KEY")
    expect(rows).to_have_count(2)
    openai = page.locator("[data-testid=secret-row][data-name=OPENAI_API_KEY]")
    expect(openai.get_by_test_id("secret-hosts-cell")).to_have_text("api.openai.com *.openai.com")
    expect(openai).to_contain_text("X-Api-Key: {value}")
    expect(page.get_by_test_id("secret-value")).to_have_value("")
    listed = json.loads(ok(up.cli("--json", "secrets", "list", "--instance", iid)))
    assert [(s["name"], s["header"]) for s in listed] == [
        ("GITHUB_TOKEN", "Authorization"), ("OPENAI_API_KEY", "X-Api-Key")]  # fmt: skip

    # A host a secret may not name: the gateway's error names the field; nothing is added.
    page.get_by_test_id("secret-name").fill("BAD")
    page.get_by_test_id("secret-value").fill("x")
    page.get_by_test_id("secret-hosts").fill("10.0.0.0/8")
    page.get_by_test_id("secret-set").click()
    error = page.get_by_test_id("secrets-section").get_by_test_id("error")
    expect(error).to_contain_text("Error -32602")
    expect(error).to_contain_text("hosts")
    expect(rows).to_have_count(2)

    github.get_by_test_id("secret-delete").click()
    confirm(page)
    expect(page.get_by_test_id("notice")).to_contain_text("Deleted GITHUB_TOKEN.")
    expect(rows).to_have_count(1)
    assert [s["name"] for s in json.loads(ok(up.cli("--json", "secrets", "list", "--instance",
                                                    iid)))] == ["OPENAI_API_KEY"]  # fmt: skip
    content = page.content()
    assert CLI_VALUE not in content
    assert PAGE_VALUE not in content
