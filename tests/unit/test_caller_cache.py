"""The gateway's cache of callers: an entry stands for at most its TTL, not once this process
wrote or heard of something that changes a caller, and not past its token's expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from controlplane.store import Store
from services.gateway.auth import CallerCache
from tests.fakes.clock import TICK, ManualClock


def cache() -> tuple[CallerCache[str], Store, ManualClock]:
    store, clock = Store("redis://unused"), ManualClock()  # no connection: its counter is read
    return CallerCache[str](store, 0.5, clock=clock), store, clock


async def test_an_entry_stands_for_its_ttl() -> None:
    c, _, clock = cache()
    c.put("k", "ann", c.version())
    await clock.advance(0.5 - TICK)
    assert c.get("k") == "ann"
    await clock.advance(TICK)
    assert c.get("k") is None


def test_a_write_that_changes_callers_drops_what_was_read_before_it() -> None:
    c, store, _ = cache()
    version = c.version()  # read before the lookup...
    store.caller_changes.heard()  # ...a role changes while it is under way...
    c.put("k", "ann as she was", version)
    assert c.get("k") is None  # ...so its answer is never served
    c.put("k", "ann", c.version())
    assert c.get("k") == "ann"
    store.caller_changes.heard()
    assert c.get("k") is None


async def test_an_expired_token_is_not_served() -> None:
    c, _, clock = cache()
    now = datetime.fromtimestamp(clock.now(), UTC)
    c.put("k", "ci", c.version(), now - timedelta(seconds=1))
    assert c.get("k") is None
    c.put("k", "ci", c.version(), now + timedelta(hours=1))
    assert c.get("k") == "ci"


async def test_a_token_is_served_until_its_expiry_of_the_clock_and_not_at_it() -> None:
    c, _, clock = cache()
    expires = datetime.fromtimestamp(clock.now(), UTC) + timedelta(seconds=0.25)
    c.put("k", "ci", c.version(), expires)
    await clock.advance(0.25 - TICK)
    assert c.get("k") == "ci"
    await clock.advance(TICK)
    assert c.get("k") is None
