"""The hostile-machine tests (test_hostile_machines.py) on a machine claimed from the local
warm pool: its daemon's root is found by its pool slot, its home was moved in at the claim."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from fleet.client import FleetClient
from services.common.settings import Settings
from tests.integration.test_hostile_machines import fifo_lock_and_restarts, local_home
from tests.integration.test_warm_pool import pooled, slot_of


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, warm_pool="local=1", warm_pool_min_available_mb=0)


async def test_a_claimed_machine_with_a_fifo_lock_stalls_no_other_tenant(
    stack: FleetClient, settings: Settings
) -> None:
    slot = await pooled(settings)
    claimed: list[str] = []

    async def home(mid: str) -> Path:
        claimed.append(mid)
        return local_home(settings, mid)

    await fifo_lock_and_restarts(stack, settings, "local", home)
    assert slot_of(settings, claimed[0]) == slot  # the hostile one came from the pool
