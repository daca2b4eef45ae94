"""The store's compare-and-set script on valkey: every rule of tests/fast/test_status_cas.py
(where they run on fakeredis, and where a rule is added) holds on the real server, so that
fakeredis's Lua and valkey's cannot drift apart unseen."""

from __future__ import annotations

from controlplane.store import Store
from tests.fast import test_status_cas as rules


async def test_every_rule_of_the_script_holds_on_valkey(store: Store) -> None:
    for rule in (
        rules.test_every_status_pair_goes_through_the_script_as_can_advance_says,
        rules.test_a_machine_that_does_not_exist_is_not_created,
    ):
        await store.redis.flushdb()  # each rule starts from an empty store, as in memory
        await rule(store)
