"""Pause and Resume in the console (a real browser, test_console.py's harness) on a gvisor
machine of `fleet up`: the status follows live, a paused machine shows the size of its memory
image and what woke it last, and Resume brings back the process it ran (the same pid, still
running). A namespaces machine offers no pause. `fleet up --runtime gvisor`: NATS where
gVisor's stack reaches it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import FleetUp, ok, start_fleet_up
from tests.e2e.test_console import WAIT_MS, machine_row, page, sign_in

__all__ = ["page"]


@pytest.fixture
def gvisor_up(tmp_path: Path) -> Iterator[FleetUp]:
    """A `fleet up` of its own: ``--runtime gvisor`` configures the whole stack (NATS where
    gVisor's stack reaches it), not one tenant."""
    up = start_fleet_up(tmp_path / "data", "--runtime", "gvisor")
    yield up
    up.stop()


@pytest.mark.timeout(600)
def test_pause_and_resume_from_the_console_keep_a_running_process(
    gvisor_up: FleetUp, page: Page
) -> None:
    up = gvisor_up
    expect.set_options(timeout=WAIT_MS)
    iid = json.loads(ok(up.cli("--json", "instances", "create", "napper")))["id"]
    ok(up.cli("machines", "create", "--instance", iid, "--wait", timeout=300))  # gvisor
    [gv] = json.loads(ok(up.cli("--json", "machines", "list", "--instance", iid)))
    assert gv["runtime"] == "gvisor"
    started = ok(up.cli("--json", "processes", "start", gv["id"], "--tag", "nap", "--",
                        "sleep", "100000"))  # fmt: skip
    pid = str(json.loads(started)["pid"])
    other = json.loads(ok(up.cli("--json", "instances", "create", "plain")))["id"]
    ok(up.cli("machines", "create", "--instance", other, "--runtime", "namespaces", "--wait",
              timeout=120))  # fmt: skip
    [ns] = json.loads(ok(up.cli("--json", "machines", "list", "--instance", other)))

    sign_in(page, up)
    expect(machine_row(page, ns["id"]).get_by_test_id("action-pause")).to_be_disabled()
    machine_row(page, gv["id"]).get_by_test_id("machine-link").click()
    expect(page.get_by_test_id("machine-id")).to_have_text(gv["id"])
    page.get_by_test_id("action-pause").click()
    expect(page.get_by_test_id("notice")).to_contain_text("pausing")
    expect(page.get_by_test_id("machine-status").first).to_have_text("paused", timeout=300_000)
    paused = json.loads(ok(up.cli("--json", "machines", "get", gv["id"])))
    assert paused["pausedBytes"] > 0
    expect(page.get_by_test_id("paused-size")).to_contain_text("MiB")
    expect(page.get_by_test_id("woken-by")).to_have_text("nothing since it was created")
    expect(page.get_by_test_id("action-resume")).to_be_enabled()

    page.get_by_test_id("action-resume").click()
    expect(page.get_by_test_id("machine-status").first).to_have_text("ready", timeout=300_000)
    expect(page.get_by_test_id("paused-size")).to_have_count(0)
    assert ok(up.cli("machines", "exec", gv["id"], "--", "kill", "-0", pid)) == ""  # runs on
    [nap] = json.loads(ok(up.cli("--json", "processes", "list", gv["id"])))
    assert (nap["tag"], str(nap["pid"]), nap["state"]) == ("nap", pid, "running")
    expect(page.get_by_test_id("woken-by")).to_have_attribute("data-by", "request")

    # Paused again after a command woke it: the page says that command woke it last.
    ok(up.cli("machines", "pause", gv["id"], timeout=300))
    assert ok(up.cli("machines", "exec", gv["id"], "--", "true", timeout=300)) == ""  # wakes it
    ok(up.cli("machines", "pause", gv["id"], timeout=300))
    expect(page.get_by_test_id("machine-status").first).to_have_text("paused", timeout=300_000)
    expect(page.get_by_test_id("paused-size")).to_contain_text("MiB")
    expect(page.get_by_test_id("woken-by")).to_have_text("a command")
    assert json.loads(ok(up.cli("--json", "machines", "get", gv["id"])))["wokenBy"] == "exec"
