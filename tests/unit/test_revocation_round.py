"""One revocation round covers a token's event streams and its byte streams, looking each
token up once (the real gateway, store and streams: tests/integration/test_byte_stream_slots.py,
tests/integration/test_gateway_events.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from contracts.errors import StreamAborted
from core.byte_stream import ByteStream
from services.common.caller_changes import CallerChanges
from services.gateway.access import Caller
from services.gateway.byte_stream_slots import ByteStreamSlots
from services.gateway.events_hub import EventHub
from services.gateway.revocation import RevocationTicker


class Tokens:
    """The store's token records: ``revoked`` are gone; every lookup is counted."""

    def __init__(self, revoked: set[str]) -> None:
        self.revoked = revoked
        self.lookups: list[str] = []

    async def get(self, token_id: str) -> Any:
        self.lookups.append(token_id)
        if token_id in self.revoked:
            return None
        live = SimpleNamespace(revoked_at=None, expires_at=None, user_id=None)
        return SimpleNamespace(token=live)


async def _nothing(_: bytes) -> None:
    return None


Round = tuple[RevocationTicker, EventHub, ByteStreamSlots, Tokens]


def _round(revoked: set[str], *, connected: bool = True, interval_s: float = 0.5,
           changes: CallerChanges | None = None, audit: Any = None) -> Round:  # fmt: skip
    tokens = Tokens(revoked)
    store: Any = SimpleNamespace(tokens=tokens, caller_changes=changes or CallerChanges())
    bus: Any = SimpleNamespace(nc=SimpleNamespace(is_connected=connected))
    hub = EventHub(bus, store, max_per_token=10, max_streams=10)
    slots = ByteStreamSlots(per_token=10)
    return RevocationTicker(store, hub, slots, interval_s, audit), hub, slots, tokens


async def test_a_revoked_token_loses_its_event_and_byte_streams_in_one_round() -> None:
    ticker, hub, slots, tokens = _round({"gone"})
    gone, kept = Caller("gone", admin=False, instance_id="i"), Caller("kept", admin=False)
    events = [hub.open(gone, None), hub.open(kept, None)]
    streams = [ByteStream("a" * 32, _nothing), ByteStream("b" * 32, _nothing)]
    for caller, stream in zip((gone, kept), streams, strict=True):
        slots.take(caller)
        slots.hold(caller, stream)
    await ticker.tick()
    assert events[0].ended.is_set()
    assert not events[1].ended.is_set()
    assert isinstance(streams[0].error, StreamAborted)
    assert streams[1].error is None
    assert sorted(tokens.lookups) == ["gone", "kept"]  # once each, for both kinds of stream


async def test_a_lost_bus_ends_every_event_stream_and_revocation_still_runs() -> None:
    ticker, hub, slots, _ = _round({"gone"}, connected=False)
    kept = hub.open(Caller("kept", admin=False), None)
    gone = Caller("gone", admin=False)
    stream = ByteStream("a" * 32, _nothing)
    slots.take(gone)
    slots.hold(gone, stream)
    await ticker.tick()
    assert kept.ended.is_set()
    assert kept.error is not None
    assert isinstance(stream.error, StreamAborted)


async def test_a_change_to_callers_runs_a_round_at_once_not_at_the_next_tick() -> None:
    changes = CallerChanges()
    ticker, hub, _, tokens = _round(set(), interval_s=3600, changes=changes)
    stream = hub.open(Caller("gone", admin=False), None)
    async with ticker:
        tokens.revoked.add("gone")
        changes.heard()  # written here, or announced by another replica
        async with asyncio.timeout(5):
            await stream.ended.wait()
        assert tokens.lookups == ["gone"]
    changes.heard()  # after the ticker stopped: nothing is watching


async def test_streams_still_letting_go_are_not_cut_again_by_the_next_round() -> None:
    """A disable is two changes (the user, their sessions): two rounds back to back, before the
    first round's streams have let go of their slots. The cut is one audit entry."""
    cuts: list[dict[str, Any]] = []
    audit = SimpleNamespace(record=lambda action, **kw: cuts.append(kw["params"]))
    ticker, hub, slots, _ = _round({"gone"}, audit=audit)
    gone = Caller("gone", admin=False)
    hub.open(gone, None)
    slots.take(gone)
    slots.hold(gone, ByteStream("a" * 32, _nothing))
    await ticker.tick()
    await ticker.tick()  # the stream and the event stream are still held
    assert cuts == [{"eventStreams": 1, "byteStreams": 1}]
