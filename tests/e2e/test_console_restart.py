"""The console's "Restart daemon" button in a real browser (chromium, via test_console.py's
harness): the machine's daemon is a new process afterwards and the machine is ready again, its
background process still running."""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import Page, expect

from providers.local.processes import running_pid
from providers.sandbox import sandbox_root_children, supervisor_pid
from tests.e2e.conftest import FleetUp, ok
from tests.e2e.test_console import WAIT_MS, machine_row, page, sign_in

__all__ = ["page"]


def daemon_pid(up: FleetUp, mid: str) -> int | None:
    """The daemon's host pid: the supervisor's child, in the machine's sandbox."""
    root = running_pid(up.data_dir.resolve() / "machines" / mid, mid)
    sup = supervisor_pid(root) if root else None
    children = sandbox_root_children(sup) if sup else []
    return children[0] if children else None


@pytest.mark.timeout(300)
def test_the_restart_button_restarts_the_daemon(shared_fleet_up: FleetUp, page: Page) -> None:
    up = shared_fleet_up
    expect.set_options(timeout=WAIT_MS)
    iid = json.loads(ok(up.cli("--json", "instances", "create", "restartable")))["id"]
    ok(up.cli("machines", "create", "--instance", iid, "--wait"))
    mid = json.loads(ok(up.cli("--json", "machines", "list", "--instance", iid)))[0]["id"]
    ok(up.cli("processes", "start", mid, "--tag", "survivor", "--", "sleep", "300"))
    before = daemon_pid(up, mid)
    assert before is not None

    sign_in(page, up)
    machine_row(page, mid).get_by_test_id("machine-link").click()
    expect(page.get_by_test_id("machine-id")).to_have_text(mid)
    page.get_by_test_id("action-restart").click()
    expect(page.get_by_test_id("notice")).to_contain_text("its daemon restarts")

    # A new daemon process (the supervisor started it), and the machine answers as ready.
    deadline = time.monotonic() + 30
    while daemon_pid(up, mid) in (None, before):
        assert time.monotonic() < deadline, "the daemon was not restarted"
        time.sleep(0.1)
    deadline = time.monotonic() + 30
    while (echo := up.cli("machines", "exec", mid, "--", "echo", "back")).returncode != 0:
        assert time.monotonic() < deadline, echo.stderr
    assert echo.stdout == "back\n"
    machine = json.loads(ok(up.cli("--json", "machines", "get", mid)))
    assert machine["status"] == "ready"
    expect(page.get_by_test_id("machine-status").first).to_have_text("ready")  # the page too
    procs = ok(up.cli("processes", "list", mid))
    assert "survivor" in procs
