"""A failed machine started again from the console (a real browser, test_console.py's
harness), with no rebuild: its page offers Start, which brings the same machine back to
`ready` in its own home. The machine fails as a user's would: its sandbox killed while it
boots, so its daemon never reports and the boot deadline (``FLEET_BOOT_TIMEOUT_S``, short
here) fails it. The rule, in memory: tests/fast/test_stop_start.py; through the API:
tests/integration/test_start_failed.py."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from contracts.status import MachineStatus as S
from fleet.client import FleetClient
from tests.e2e.conftest import FleetUp, ok, start_fleet_up
from tests.e2e.test_console import WAIT_MS, machine_row, page, sign_in
from tests.e2e.test_up_stopped_in_setup import held_booting, signal_all

__all__ = ["page"]

BOOT_TIMEOUT_S = 4.0
STARTS_FAILED = "Start the failed machine again in its own home, without a rebuild"


async def failed_machine(up: FleetUp, killed: list[int]) -> str:
    """A machine whose sandbox was killed (its pids put in ``killed``) while it booted, once
    the deadline has failed it."""
    async with FleetClient(up.url, up.token) as client:
        mid, held = await held_booting(up, client)
        killed.extend(held)
        signal_all(held, signal.SIGKILL)
        machine = await client.wait_for(mid, ["failed", "ready"], timeout_s=120)
        assert machine.status is S.FAILED, machine.status
        assert machine.external_id, "a machine its provider made has an external id"
        return mid


@pytest.fixture
def own_up(tmp_path: Path) -> Iterator[tuple[FleetUp, list[int]]]:
    """A `fleet up` of the test's own (a short boot deadline) and the pids the test kills."""
    env = {"FLEET_BOOT_TIMEOUT_S": f"{BOOT_TIMEOUT_S:g}"}
    killed: list[int] = []
    started = start_fleet_up(tmp_path / "data", env=env)
    yield started, killed
    started.stop(killed=killed)


@pytest.mark.timeout(420)
def test_a_failed_machine_is_started_from_the_console(
    own_up: tuple[FleetUp, list[int]], page: Page
) -> None:
    up, killed = own_up
    expect.set_options(timeout=WAIT_MS)
    # Sync Playwright runs an event loop in this thread: the client's loop runs in its own.
    with ThreadPoolExecutor(1) as pool:
        mid = pool.submit(asyncio.run, failed_machine(up, killed)).result()
    sign_in(page, up)
    machine_row(page, mid).get_by_test_id("machine-link").click()
    expect(page.get_by_test_id("machine-id")).to_have_text(mid)
    expect(page.get_by_test_id("machine-status").first).to_have_text("failed")
    # Its panels ask a daemon that does not serve: one calm line each, no alarm.
    expect(page.get_by_test_id("ports-error")).to_contain_text("Not running")
    expect(page.locator(".alert-error")).to_have_count(0)
    start = page.get_by_test_id("action-start")
    expect(start).to_be_enabled()
    expect(start).to_have_attribute("title", STARTS_FAILED)
    start.click()
    expect(page.get_by_test_id("notice")).to_contain_text("is starting")
    expect(page.get_by_test_id("machine-status").first).to_have_text("ready", timeout=180_000)
    assert ok(up.cli("machines", "exec", mid, "--", "echo", "back")) == "back\n"
    expect(page.get_by_test_id("action-stop")).to_be_enabled()
