"""Stop, Start and Fork in the console (a real browser, test_console.py's harness) and on the
CLI (`fleet machines stop|start|fork`, `fleet instances autostop`): the status follows live on
the page, a stopped machine has no process on the host, Start brings the same one back, and a
fork is a new machine of the instance with its home."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from providers.local import machine_roots
from tests.e2e.conftest import FleetUp, ok, start_fleet_up
from tests.e2e.test_console import WAIT_MS, machine_row, page, sign_in

__all__ = ["page"]


@pytest.mark.timeout(300)
def test_stop_and_start_from_the_console_and_the_cli(shared_fleet_up: FleetUp, page: Page) -> None:
    up = shared_fleet_up
    expect.set_options(timeout=WAIT_MS)
    iid = json.loads(ok(up.cli("--json", "instances", "create", "sleepy")))["id"]
    ok(up.cli("machines", "create", "--instance", iid, "--wait"))
    mid = json.loads(ok(up.cli("--json", "machines", "list", "--instance", iid)))[0]["id"]
    machine_dir = up.data_dir.resolve() / "machines" / mid
    assert "auto-stop is off" in ok(up.cli("instances", "autostop", iid))
    assert "after 900 s" in ok(up.cli("instances", "autostop", iid, "900"))

    sign_in(page, up)
    machine_row(page, mid).get_by_test_id("machine-link").click()
    expect(page.get_by_test_id("machine-id")).to_have_text(mid)
    page.get_by_test_id("action-stop").click()
    expect(page.get_by_test_id("notice")).to_contain_text("stopped")
    expect(page.get_by_test_id("machine-status").first).to_have_text("stopped")
    expect(page.get_by_test_id("action-start")).to_be_enabled()
    wait_gone(machine_dir, mid)

    # A call that needs it wakes it (wake on access): the exec starts it and is answered.
    assert ok(up.cli("machines", "exec", mid, "--", "echo", "woken", timeout=180)) == "woken\n"
    expect(page.get_by_test_id("machine-status").first).to_have_text("ready", timeout=120_000)
    page.get_by_test_id("action-stop").click()
    expect(page.get_by_test_id("machine-status").first).to_have_text("stopped")

    page.get_by_test_id("action-start").click()
    expect(page.get_by_test_id("machine-status").first).to_have_text("ready", timeout=120_000)
    assert ok(up.cli("machines", "exec", mid, "--", "echo", "back")) == "back\n"

    # The CLI's stop and start --wait.
    assert "stopped" in ok(up.cli("machines", "stop", mid))
    expect(page.get_by_test_id("machine-status").first).to_have_text("stopped")
    assert "ready" in ok(up.cli("machines", "start", mid, "--wait", timeout=180))
    expect(page.get_by_test_id("machine-status").first).to_have_text("ready")

    # Fork from the console and from the CLI: new machines of the instance, the source running.
    ok(up.cli("machines", "exec", mid, "--", "sh", "-c", "echo kept > ~/forked.txt"))
    page.get_by_test_id("action-fork").click()
    expect(page.get_by_test_id("notice")).to_contain_text(f"Forked {mid}")
    forked = ok(up.cli("machines", "fork", mid, timeout=180))
    assert "ready" in forked
    fork = forked.split()[0]
    assert ok(up.cli("machines", "exec", fork, "--", "cat", "forked.txt")) == "kept\n"
    listed = json.loads(ok(up.cli("--json", "machines", "list", "--instance", iid)))
    assert len(listed) == 3
    assert {m["id"]: m["status"] for m in listed}[mid] == "ready"


def wait_gone(machine_dir: Path, mid: str) -> None:
    """The provisioner ends a stopped machine's processes shortly after its status says so."""
    deadline = time.monotonic() + 30
    while machine_roots(machine_dir, mid):
        assert time.monotonic() < deadline, "the stopped machine still runs"
        time.sleep(0.1)


@pytest.mark.timeout(400)
def test_a_stopped_machine_stays_stopped_across_a_fleet_up_restart(tmp_path: Path) -> None:
    """`fleet up` ended (Ctrl-C) and run again on the same data dir: the stopped machine is
    still stopped and nothing of it runs; the running one is back, with its background
    process; the stopped one's process comes back with its start. A `fleet up` of its own,
    never the shared one: it stops and restarts it."""
    data = tmp_path / "data"
    up = start_fleet_up(data)
    try:
        stopped_mid, running_mid = (_ready_machine(up, name) for name in ("stopped", "running"))
        for mid in (stopped_mid, running_mid):
            ok(up.cli("processes", "start", mid, "--tag", "bg", "--", "sleep", "3000"))
        ok(up.cli("machines", "stop", stopped_mid))
        wait_gone(data.resolve() / "machines" / stopped_mid, stopped_mid)
    finally:
        up.stop()
    up = start_fleet_up(data)
    try:
        wait_answers(up, running_mid)
        machine = json.loads(ok(up.cli("--json", "machines", "get", stopped_mid)))
        assert machine["status"] == "stopped"
        assert not machine_roots(data.resolve() / "machines" / stopped_mid, stopped_mid)
        assert _bg_state(up, running_mid) == "running", (
            ok(up.cli("processes", "list", running_mid)),
            (data / "machines" / running_mid / "daemon.log").read_text()[-6000:],
        )
        assert "ready" in ok(up.cli("machines", "start", stopped_mid, "--wait", timeout=180))
        assert _bg_state(up, stopped_mid) == "running"
    finally:
        up.stop()


def _ready_machine(up: FleetUp, name: str) -> str:
    iid = json.loads(ok(up.cli("--json", "instances", "create", name)))["id"]
    ok(up.cli("machines", "create", "--instance", iid, "--wait", timeout=180))
    return str(json.loads(ok(up.cli("--json", "machines", "list", "--instance", iid)))[0]["id"])


def wait_answers(up: FleetUp, mid: str) -> None:
    """Its daemon is back (until then its status says unresponsive)."""
    deadline = time.monotonic() + 120
    while (echo := up.cli("machines", "exec", mid, "--", "echo", "back")).returncode != 0:
        assert time.monotonic() < deadline, echo.stderr
        time.sleep(0.2)


def _bg_state(up: FleetUp, mid: str) -> str:
    procs = json.loads(ok(up.cli("--json", "processes", "list", mid)))
    return str(next(p["state"] for p in procs if p["tag"] == "bg"))
