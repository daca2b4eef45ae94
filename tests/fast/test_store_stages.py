"""The stages' one-round-trip step (``store.stages.advance``, its Lua script run by fakeredis)
keeps every rule of the compare-and-set it folds together: the status table, the first token
claimed wins, a lock is released only by its holder, nothing is written to a machine that does
not exist. tests/integration/test_store_stages.py runs the script on valkey."""

from __future__ import annotations

import itertools

from contracts.status import MachineStatus, can_advance
from controlplane.store import Store
from controlplane.store.keys import (
    F_DAEMON_VERSION,
    F_EXTERNAL_ID,
    F_SEALED_CREDENTIAL,
    F_STATUS,
    F_STATUS_REASON,
)

ALL = list(MachineStatus)


async def test_every_status_pair_goes_through_advance_as_can_advance_says(store: Store) -> None:
    machine = await store.create_machine("i-0000000000000000", "local")
    key = store.keys.k_machine(machine.id)
    for current, target in itertools.product(ALL, ALL):
        await store.redis.hset(key, mapping={F_STATUS: current.value, F_STATUS_REASON: "before"})
        await store.redis.hdel(key, F_EXTERNAL_ID)
        pair = f"{current.value} -> {target.value}"

        step = await store.stages.advance(machine.id, target, "after", move={F_EXTERNAL_ID: "x-1"})

        t = step.transition
        assert t.previous is current, pair
        assert t.accepted is can_advance(current, target), pair
        assert step.machine is not None
        m = step.machine  # as it is after the step, read in the same round trip
        if t.moved:
            assert (m.status, m.status_reason, m.external_id) == (target, "after", "x-1"), pair
        else:
            assert (m.status, m.status_reason, m.external_id) == (current, "before", None), pair
        assert m == await store.get_machine(machine.id), pair


async def test_a_machine_that_does_not_exist_gets_no_field_at_all(store: Store) -> None:
    # A forged or stale event names a machine id nobody created: not even the fields written
    # "whatever the status" may make a hash appear, nor a lock survive.
    await store.redis.set(store.keys.k_lock("provision:m-doesnotexist0000"), "ours")
    for target in ALL:
        step = await store.stages.advance(
            "m-doesnotexist0000", target, "after",
            always={F_DAEMON_VERSION: "9.9.9"}, claim={F_SEALED_CREDENTIAL: "sealed"},
            move={F_EXTERNAL_ID: "x"}, release=("provision:m-doesnotexist0000", "ours"),
        )  # fmt: skip
        assert (step.transition.accepted, step.machine, step.sealed_token) == (False, None, None)
    assert not await store.redis.exists(store.keys.k_machine("m-doesnotexist0000"))
    assert not await store.redis.exists(store.keys.k_lock("provision:m-doesnotexist0000"))
    assert await store.list_machines() == []


async def test_the_first_token_claimed_wins_and_a_refused_step_claims_nothing(
    store: Store,
) -> None:
    m = await store.create_machine("i-0000000000000000", "local")
    first = await store.stages.advance(
        m.id, MachineStatus.PROVISIONING, "starting", claim={F_SEALED_CREDENTIAL: "mine"}
    )
    again = await store.stages.advance(
        m.id, MachineStatus.PROVISIONING, "starting", claim={F_SEALED_CREDENTIAL: "theirs"}
    )
    assert (first.sealed_token, again.sealed_token) == ("mine", "mine")
    assert again.transition.accepted
    assert not again.transition.moved

    other = await store.create_machine("i-0000000000000001", "local")
    refused = await store.stages.advance(
        other.id, MachineStatus.READY, "too early", claim={F_SEALED_CREDENTIAL: "sneaky"}
    )
    assert not refused.transition.accepted
    assert await store.machine_secret(other.id) is None


async def test_a_lock_is_released_only_by_its_holder(store: Store) -> None:
    m = await store.create_machine("i-0000000000000000", "local")
    await store.transition(m.id, MachineStatus.PROVISIONING, "starting")
    assert await store.locks.take(f"provision:{m.id}", "holder", ttl_s=10)

    # Someone else's token: the status step is taken, the holder's lock stays.
    await store.stages.advance(
        m.id, MachineStatus.BOOTING, "booting", release=(f"provision:{m.id}", "intruder")
    )
    assert await store.redis.get(store.keys.k_lock(f"provision:{m.id}")) == "holder"
    # Refused (no such move from booting back to provisioning) yet released: the holder is done.
    step = await store.stages.advance(
        m.id, MachineStatus.PROVISIONING, "x", release=(f"provision:{m.id}", "holder")
    )
    assert not step.transition.accepted
    assert not await store.redis.exists(store.keys.k_lock(f"provision:{m.id}"))


async def test_a_required_field_holds_the_move_and_always_fields_are_written_anyway(
    store: Store,
) -> None:
    m = await store.create_machine("i-0000000000000000", "local")
    await store.transition(m.id, MachineStatus.PROVISIONING, "starting")
    await store.transition(m.id, MachineStatus.BOOTING, "booting")  # no external id recorded
    step = await store.stages.advance(
        m.id, MachineStatus.SETTING_UP, "pushing", require=F_EXTERNAL_ID,
        always={F_DAEMON_VERSION: "1.2.3"},
    )  # fmt: skip
    assert not step.transition.accepted
    assert step.machine is not None
    assert (step.machine.status, step.machine.daemon_version) == (MachineStatus.BOOTING, "1.2.3")
