"""`fleet up` killed with SIGKILL: its servers and services end with it (base.lifeline), its
keeper stops its machines (fleet/up/keeper.py), and the next `fleet up` on the same data dir says
what the dead one left, ends it, and has its machines ready again."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from base.lifeline import recorded
from fleet.up.stack import CHILDREN_NAME, SERVICES
from providers.local.processes import machine_roots
from providers.local.supervision import STOP_GRACE_S
from tests.docker_env import docker_image, inspect, remove_containers
from tests.e2e.conftest import FleetUp, ok, start_fleet_up
from tests.waiters import still_running_after

__all__ = ["docker_image", "remove_containers"]

#: How long after `fleet up` is killed its servers and services may still run.
GONE_WITHIN_S = 2.0


@pytest.fixture
def ups() -> Iterator[list[FleetUp]]:
    """The `fleet up`s a test starts, each stopped at its end if the test did not."""
    started: list[FleetUp] = []
    yield started
    for up in started:
        up.stop()


def ready_machine(up: FleetUp) -> str:
    iid = json.loads(ok(up.cli("--json", "instances", "create", "survivor")))["id"]
    ok(up.cli("machines", "create", "--instance", iid, "--wait", timeout=180))
    return str(json.loads(ok(up.cli("--json", "machines", "list", "--instance", iid)))[0]["id"])


def kill_and_start_again(up: FleetUp, ups: list[FleetUp], *extra: str) -> FleetUp:
    """SIGKILL ``up``; every server and service it started is gone within GONE_WITHIN_S; then
    `fleet up` again on its data dir, which says what it found."""
    record = up.data_dir.resolve() / CHILDREN_NAME
    children = recorded(record)
    labels = {label for _, _, label in children}
    assert {"nats-server", "valkey", *SERVICES} <= labels, children
    up.proc.kill()
    up.proc.wait()
    left = still_running_after([pid for pid, _, _ in children], GONE_WITHIN_S)
    assert left == [], [c for c in children if c[0] in left]
    # Before its banner, it waits for the dead stack's machines to stop (their grace is 20 s).
    again = start_fleet_up(up.data_dir, *extra, timeout=STOP_GRACE_S + 60)
    ups.append(again)
    assert "the last fleet up on this data dir ended without stopping" in again.banner
    assert "its servers and services had ended with it" in again.banner
    return again


def answers(up: FleetUp, mid: str, timeout_s: float = 120) -> str:
    """The machine's daemon answers again (each try is a CLI run: it paces itself)."""
    deadline = time.monotonic() + timeout_s
    while (echo := up.cli("machines", "exec", mid, "--", "cat", "mark")).returncode != 0:
        assert time.monotonic() < deadline, echo.stderr
    return echo.stdout


@pytest.mark.timeout(400)
def test_a_killed_fleet_up_leaves_no_server_and_the_next_has_its_machines(
    tmp_path: Path, ups: list[FleetUp]
) -> None:
    data = tmp_path / "data"
    up = start_fleet_up(data)
    ups.append(up)
    mid = ready_machine(up)
    ok(up.cli("machines", "exec", mid, "--", "sh", "-c", "echo kept > ~/mark"))
    machine_dir = data.resolve() / "machines" / mid
    before = machine_roots(machine_dir, mid)
    assert before

    again = kill_and_start_again(up, ups)
    assert answers(again, mid) == "kept\n"
    after = machine_roots(machine_dir, mid)
    assert after
    assert set(after).isdisjoint(before), "the dead stack's machine was not ended"
    assert again.stop() == 0
    assert not machine_roots(machine_dir, mid)


@pytest.mark.timeout(600)
@pytest.mark.usefixtures("docker_image", "remove_containers")
async def test_a_killed_docker_fleet_up_leaves_no_server_and_the_next_has_its_machines(
    tmp_path: Path, ups: list[FleetUp]
) -> None:
    up = start_fleet_up(tmp_path / "data", "--provider", "docker")
    ups.append(up)
    mid = ready_machine(up)
    ok(up.cli("machines", "exec", mid, "--", "sh", "-c", "echo kept > ~/mark"))
    started = (await inspect(mid))["State"]["StartedAt"]

    again = kill_and_start_again(up, ups, "--provider", "docker")
    assert answers(again, mid) == "kept\n"
    state = (await inspect(mid))["State"]
    assert state["Running"]
    assert state["StartedAt"] != started, "not restarted on the new NATS"
    assert again.stop() == 0
