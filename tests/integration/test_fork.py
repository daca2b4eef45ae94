"""Forking machines, ``local`` provider, every service and real daemons, on both home
filesystems (``btrfs``: copy-on-write homes on a loop-mounted image fleetd makes; ``plain``:
a copy with the source frozen): a fork has the source's tree as of one instant (a file being
appended to holds a prefix with no torn line), the source keeps running (its background
process and its terminal), writes do not cross, and forks are independent of their source
(stopped, archived) and of each other (a chain of stops, starts and forks keeps every file).
The scenarios are tests/fork_checks.py's; test_fork_docker.py runs them on ``docker``."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.local import homes as homes_fs
from tests.fork_checks import (
    HomeOf,
    fork_is_one_instant,
    forks_outlive_their_source,
    snapshot_makes_identical_machines,
)
from tests.integration.test_pipeline import home_of


@pytest.fixture(params=["btrfs", "plain"])
def stack_settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    return msgspec.structs.replace(settings, homes_fs=request.param, homes_image_gb=4)


def homes(settings: Settings) -> HomeOf:
    async def home(mid: str) -> Path:
        return home_of(settings, mid)

    return home


async def test_a_fork_is_the_source_at_one_instant_and_the_source_keeps_running(
    stack: FleetClient, stack_settings: Settings
) -> None:
    cow = stack_settings.homes_fs == "btrfs"
    mid, fork, _ = await fork_is_one_instant(stack, "local", homes(stack_settings), cow)
    for m in (mid, fork):
        assert homes_fs.is_subvolume(home_of(stack_settings, m)) is cow


# btrfs alone: the plain copy is the first test's (and the snapshots'), the rest is the same.
@pytest.mark.parametrize("stack_settings", ["btrfs"], indirect=True)
async def test_forks_of_a_stopped_machine_outlive_their_source_through_stops_and_starts(
    stack: FleetClient, stack_settings: Settings
) -> None:
    machines = await forks_outlive_their_source(stack, "local", 10)
    assert all(homes_fs.is_subvolume(home_of(stack_settings, m)) for m in machines)


async def test_two_machines_from_a_snapshot_are_identical_and_outlive_it(
    stack: FleetClient, stack_settings: Settings
) -> None:
    how = "cow" if stack_settings.homes_fs == "btrfs" else "copy"
    await snapshot_makes_identical_machines(stack, "local", homes(stack_settings), how)
