"""The hostile-machine tests (test_hostile_machines.py) on a machine claimed from the local
warm pool: its daemon's root is found by its pool slot, its home was moved in at the claim;
and on a stopped machine's start that adopts a pooled sandbox, given the home it has."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from contracts.status import MachineStatus
from fleet.client import FleetClient
from services.common.settings import Settings
from tests.hostile import Canary
from tests.integration.test_hostile_machines import (
    STOP_S,
    USUAL_S,
    canary,
    fifo_lock_and_restarts,
    local_home,
)
from tests.integration.test_isolation import ready, sh
from tests.integration.test_warm_pool import pooled, slot_of, up_slots
from tests.waiters import wait_until

__all__ = ["canary"]  # a fixture, re-exported for pytest


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


async def test_a_start_that_adopts_a_pooled_sandbox_follows_nothing_in_the_home(
    stack: FleetClient, settings: Settings, canary: Canary
) -> None:
    """A stopped machine's home, full of traps, given to a pooled sandbox at its start: the
    chown walks it by descriptor, the bind is made of the home directory itself (nothing in
    it is looked up), and the sandbox's side is root's tmpfs, which no code of the machine
    ever ran in."""
    used = {await pooled(settings)}
    mid = await ready(stack, "mallory", "local")
    used.add(slot_of(settings, mid) or "")
    home = local_home(settings, mid)
    out = await sh(stack, mid, f"mkdir -p ~/k && cd ~/k && ln -s {canary.a_file} link && "
                   f"ln -s {canary.root} dirlink && mkfifo fifo && truncate -s 10G big && "
                   "echo done")  # fmt: skip
    assert out.rstrip().endswith("done")
    os.mknod(home / "k" / "zero", 0o666 | 0o020000, os.makedev(1, 5))  # as root: see there
    await stack.stop_machine(mid)
    await stack.wait_for(mid, ("stopped",), timeout_s=STOP_S)
    await wait_until(lambda: bool(up_slots(settings) - used), timeout=60)
    await stack.start_machine(mid)
    started = await stack.wait_for(mid, ("ready", "failed"), timeout_s=USUAL_S)
    assert started.status is MachineStatus.READY, started.status_reason
    assert slot_of(settings, mid) not in used  # adopted
    assert canary.changed() == {}
    uid = int((settings.data_path / "machines" / mid / "uid").read_text())
    assert (home / "k" / "fifo").lstat().st_uid == uid
    assert (home / "k" / "big").stat().st_uid == uid
    assert (home / "k" / "zero").lstat().st_uid == 0  # a device node is never given away
    assert (await sh(stack, mid, "readlink ~/k/link")).strip() == str(canary.a_file)
