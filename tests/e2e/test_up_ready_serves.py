"""`ready` is said only while the machine's daemon serves. `fleet up` stopped and started again
(or killed and started again) ends its machines and starts them anew: until a machine's new
daemon is connected, a call to it answers 1502, and the machine must not read `ready` then."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from contracts.errors import DaemonUnavailable
from contracts.status import MachineStatus
from fleet.client import FleetClient
from providers.local.supervision import STOP_GRACE_S
from tests.e2e.conftest import FleetUp, start_fleet_up
from tests.e2e.test_up_killed import kill_and_start_again, ready_machine, ups

__all__ = ["ups"]


async def ready_only_while_served(up: FleetUp, mid: str, timeout_s: float = 120) -> list[str]:
    """Poll the machine's status and a call to its daemon until the daemon answers: whenever
    the status said ready, the call that followed was answered. The statuses seen, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    async with FleetClient(up.url, up.token) as client:
        while True:
            status = (await client.get_machine(mid)).status
            if not seen or seen[-1] != status:
                seen.append(status)
            try:
                done = await client.exec(mid, ["true"], timeout_s=30)
            except DaemonUnavailable as exc:
                refused: DaemonUnavailable | None = exc
            else:
                refused = None
                assert done.exit_code == 0
            if status is MachineStatus.READY:
                assert refused is None, f"ready, but {refused!r} (seen {seen})"
                return seen
            assert time.monotonic() < deadline, f"its daemon never served again (seen {seen})"


@pytest.mark.timeout(400)
async def test_after_fleet_up_restarts_ready_means_its_daemon_serves(
    tmp_path: Path, ups: list[FleetUp]
) -> None:
    data = tmp_path / "data"
    up = start_fleet_up(data)
    ups.append(up)
    mid = ready_machine(up)
    assert up.stop() == 0
    again = start_fleet_up(data, timeout=STOP_GRACE_S + 60)
    ups.append(again)
    seen = await ready_only_while_served(again, mid)
    assert seen[-1] == MachineStatus.READY


@pytest.mark.timeout(400)
async def test_after_a_killed_fleet_up_ready_means_its_daemon_serves(
    tmp_path: Path, ups: list[FleetUp]
) -> None:
    up = start_fleet_up(tmp_path / "data")
    ups.append(up)
    mid = ready_machine(up)
    again = kill_and_start_again(up, ups)
    seen = await ready_only_while_served(again, mid)
    assert seen[-1] == MachineStatus.READY
