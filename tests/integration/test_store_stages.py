"""The stages' one-round-trip step (``store.stages.advance``) on valkey: every rule of
tests/fast/test_store_stages.py (where they run on fakeredis, and where a rule is added) holds
on the real server, so that fakeredis's Lua and valkey's cannot drift apart unseen."""

from __future__ import annotations

from controlplane.store import Store
from tests.fast import test_store_stages as rules


async def test_every_rule_of_the_step_holds_on_valkey(store: Store) -> None:
    for rule in (
        rules.test_every_status_pair_goes_through_advance_as_can_advance_says,
        rules.test_a_machine_that_does_not_exist_gets_no_field_at_all,
        rules.test_the_first_token_claimed_wins_and_a_refused_step_claims_nothing,
        rules.test_a_lock_is_released_only_by_its_holder,
        rules.test_a_required_field_holds_the_move_and_always_fields_are_written_anyway,
    ):
        await store.redis.flushdb()  # each rule starts from an empty store, as in memory
        await rule(store)
