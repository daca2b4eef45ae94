"""The gateway's cache of callers: an entry stands for at most its TTL, not once this process
wrote or heard of something that changes a caller, and not past its token's expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.common.store import Store
from services.gateway.caller_cache import CallerCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def cache() -> tuple[CallerCache[str], Store, Clock]:
    store, clock = Store("redis://unused"), Clock()  # no connection: only its counter is read
    return CallerCache[str](store, 0.5, clock=clock), store, clock


def test_an_entry_stands_for_its_ttl() -> None:
    c, _, clock = cache()
    c.put("k", "ann", c.version())
    clock.now = 0.49
    assert c.get("k") == "ann"
    clock.now = 0.5
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


def test_an_expired_token_is_not_served() -> None:
    c, _, _ = cache()
    c.put("k", "ci", c.version(), datetime.now(UTC) - timedelta(seconds=1))
    assert c.get("k") is None
    c.put("k", "ci", c.version(), datetime.now(UTC) + timedelta(hours=1))
    assert c.get("k") == "ci"
