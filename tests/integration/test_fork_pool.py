"""Copy-on-write homes with the warm pool (``local``): a pooled machine's home is a subvolume
too (made in the pool, renamed into the machine's directory at its claim: one filesystem), so
a machine that came from the pool forks as a snapshot."""

from __future__ import annotations

import msgspec
import pytest

from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.local import homes as homes_fs
from tests.fork_checks import home_copy, ready_forks
from tests.integration.test_pipeline import home_of
from tests.integration.test_warm_pool import pooled, ready_machine, slot_of


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(
        settings, homes_fs="btrfs", homes_image_gb=4, warm_pool="local=1",
        warm_pool_min_available_mb=0,
    )  # fmt: skip


async def test_a_machine_from_the_pool_forks_as_a_snapshot(
    stack: FleetClient, stack_settings: Settings
) -> None:
    settings = stack_settings
    slot = await pooled(settings)
    inst = await stack.create_instance("pooled-fork")
    mid, _ = await ready_machine(stack, inst.id)
    assert slot_of(settings, mid) == slot  # it came from the pool
    assert homes_fs.is_subvolume(home_of(settings, mid))
    await stack.write_file(mid, "~/from-pool.txt", "pooled\n")
    [fork] = await ready_forks(stack, mid, 1)
    copied = (await home_copy(stack, fork)).home_copy
    assert copied is not None
    assert copied.how == "cow"
    assert (home_of(settings, fork) / "from-pool.txt").read_text() == "pooled\n"
