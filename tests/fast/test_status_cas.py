"""The store's compare-and-set (its Lua script, run by fakeredis) enforces exactly
contracts/status.py; tests/integration/test_status_cas.py runs the script on valkey."""

from __future__ import annotations

import itertools

from contracts.status import MachineStatus, can_advance
from controlplane.store import Store
from controlplane.store.keys import F_EXTERNAL_ID, F_STATUS, F_STATUS_REASON

ALL = list(MachineStatus)


async def test_every_status_pair_goes_through_the_script_as_can_advance_says(
    store: Store,
) -> None:
    machine = await store.create_machine("i-0000000000000000", "local")
    key = store.keys.k_machine(machine.id)
    for current, target in itertools.product(ALL, ALL):
        # Put the machine in `current` behind the store's back: no transition leads everywhere.
        await store.redis.hset(key, mapping={F_STATUS: current.value, F_STATUS_REASON: "before"})
        await store.redis.hdel(key, F_EXTERNAL_ID)
        pair = f"{current.value} -> {target.value}"

        t = await store.transition(machine.id, target, "after", external_id="x-1")

        assert t.previous is current, pair
        assert t.accepted is can_advance(current, target), pair
        assert t.moved is (can_advance(current, target) and current is not target), pair
        now = await store.get_machine(machine.id)
        if t.moved:
            assert (now.status, now.status_reason, now.external_id) == (target, "after", "x-1")
        else:  # refused, or an admitted repeat: nothing is rewritten
            assert (now.status, now.status_reason, now.external_id) == (current, "before", None)


async def test_a_machine_that_does_not_exist_is_not_created(store: Store) -> None:
    for target in ALL:
        t = await store.transition("m-doesnotexist0000", target, "after")
        assert (t.accepted, t.moved, t.previous) == (False, False, None)
    assert await store.list_machines() == []
