"""The Webhooks section of an instance in a real browser (test_console.py's harness): an
endpoint on this host is added (its secret shown once), a new machine's events reach it, and
each attempt is listed with its status; a test event too."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import FleetUp, ok, start_fleet_up
from tests.e2e.test_console import WAIT_MS, page, sign_in

__all__ = ["page"]


class _Hooks(BaseHTTPRequestHandler):
    got: list[dict[str, object]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.got.append({"id": self.headers["webhook-id"], **json.loads(body)})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hooks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def up_allowing_loopback(tmp_path: Path) -> Iterator[FleetUp]:
    """`fleet up` whose webhooks may go to this host's loopback (the receiver)."""
    up = start_fleet_up(tmp_path / "data", env={"FLEET_WEBHOOK_ALLOW_PRIVATE": "127.0.0.1/32"})
    yield up
    up.stop()


@pytest.mark.timeout(300)
def test_add_a_webhook_and_see_its_deliveries(
    up_allowing_loopback: FleetUp, page: Page, receiver: str
) -> None:
    up = up_allowing_loopback
    expect.set_options(timeout=WAIT_MS)
    iid = json.loads(ok(up.cli("--json", "instances", "create", "hooked")))["id"]
    sign_in(page, up)
    page.get_by_test_id("nav-instances").click()
    row = page.locator(f'[data-testid=instance-row][data-instance-id="{iid}"]')
    row.get_by_test_id("instance-webhooks").click()
    expect(page.get_by_test_id("webhooks-instance")).to_have_value(iid)
    page.get_by_test_id("webhook-url").fill(receiver)
    page.get_by_test_id("webhook-events").fill("machine.created machine.ready")
    page.get_by_test_id("webhook-create").click()
    expect(page.get_by_test_id("webhook-secret")).to_contain_text("whsec_")
    card = page.get_by_test_id("webhook")
    expect(card.get_by_test_id("webhook-state")).to_have_text("ok")

    ok(up.cli("machines", "create", "--instance", iid, "--wait", timeout=180))
    delivered = card.locator('[data-testid=delivery-row][data-outcome="delivered"]')
    for _ in range(60):  # the ready event's delivery follows the machine's ready by moments
        card.get_by_test_id("webhook-refresh").click()
        if delivered.count() >= 2:
            break
        page.wait_for_timeout(500)
    expect(delivered).to_have_count(2)
    expect(delivered.first.get_by_test_id("delivery-status")).to_have_text("204")
    assert [h["type"] for h in _Hooks.got] == ["machine.created", "machine.ready"]

    card.get_by_test_id("webhook-test").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Test event queued")
    for _ in range(60):
        card.get_by_test_id("webhook-refresh").click()
        if delivered.count() >= 3:
            break
        page.wait_for_timeout(500)
    expect(delivered.first).to_contain_text("webhook.test")
