"""The snapshot cap holds for calls at once: each call's place is taken before its (slow) copy,
at once with the count (controlplane/store/snapshots.py ``reserve``)."""

from __future__ import annotations

import asyncio

import pytest

from contracts.errors import InternalError, SnapshotLimit
from tests.fast.conftest import World

method = pytest.mark.gateway_method


@method("machines.snapshot")
async def test_calls_at_once_never_pass_the_snapshot_cap(world: World) -> None:
    """30 snapshots asked at once under a cap of 4, each copy slow: 4 are made, 26 refused by
    name, and a failed copy gives its place back."""
    m = await world.ready_machine()
    world.api.forks.max_snapshots = 4
    gate = asyncio.Event()
    take = world.provider.take_snapshot

    async def slow(machine_id: str, snapshot_id: str):  # type: ignore[no-untyped-def]
        await gate.wait()  # every call is past its check before any copy ends
        return await take(machine_id, snapshot_id)

    world.provider.take_snapshot = slow  # type: ignore[method-assign]
    calls = [asyncio.ensure_future(world.rpc("machines.snapshot", {"machineId": m.id, "name": "s"}))
             for _ in range(30)]  # fmt: skip
    refused_all = asyncio.Event()

    def one_done(_: object) -> None:
        if sum(c.done() for c in calls) >= 26:
            refused_all.set()

    for c in calls:
        c.add_done_callback(one_done)
    async with asyncio.timeout(30):  # the 26 past the cap are answered while 4 copy
        await refused_all.wait()
    gate.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    made = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, SnapshotLimit)]
    assert (len(made), len(refused)) == (4, 26), results
    listed = await world.rpc("snapshots.list", {"instanceId": m.instance_id})
    assert len(listed["snapshots"]) == 4
    # A copy that fails gives its place back: after one is deleted, a failed take, then a good one.
    await world.rpc("snapshots.delete", {"snapshotId": made[0]["id"]})

    async def broken(machine_id: str, snapshot_id: str):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    world.provider.take_snapshot = broken  # type: ignore[method-assign]
    with pytest.raises(InternalError):
        await world.rpc("machines.snapshot", {"machineId": m.id, "name": "s"})
    world.provider.take_snapshot = take  # type: ignore[method-assign]
    await world.rpc("machines.snapshot", {"machineId": m.id, "name": "s"})
    with pytest.raises(SnapshotLimit):
        await world.rpc("machines.snapshot", {"machineId": m.id, "name": "s"})
