"""One revocation round covers a token's event streams and its byte streams, looking each
token up once, and cuts what a removed or demoted member no longer holds (the real gateway,
store and streams: tests/integration/test_byte_stream_slots.py,
tests/integration/test_gateway_events.py, tests/integration/test_member_cut.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from base.byte_stream import ByteStream
from base.clock import SYSTEM_CLOCK, Clock
from contracts.bus.events import now
from contracts.errors import Forbidden, StreamAborted
from contracts.gateway.people import User
from contracts.people import MACHINES_EXEC, MACHINES_READ, PlatformRole
from controlplane.security.caller_changes import CallerChanges
from controlplane.store.users import Found
from services.gateway.auth import EVERYWHERE, Caller, Reach
from services.gateway.streams import ByteStreamSlots, EventHub, RevocationTicker
from tests.fakes.clock import TICK, ManualClock


class Users:
    """The store's callers: ``revoked`` tokens no longer stand; ``roles`` are each token's
    user's instance roles now (a token without any is a token of no user). Every lookup is
    counted."""

    def __init__(self, revoked: set[str]) -> None:
        self.revoked = revoked
        self.roles: dict[str, dict[str, str]] = {}
        #: Each token's user's platform role (member unless said).
        self.platform: dict[str, PlatformRole] = {}
        self.lookups: list[str] = []

    async def by_token_id(self, token_id: str) -> Found | None:
        self.lookups.append(token_id)
        if token_id in self.revoked:
            return None
        record = {"id": token_id, "name": token_id, "createdAt": "2026-01-01T00:00:00Z",
                  "scopes": '["admin", "machines:read", "machines:exec", "ports"]'}  # fmt: skip
        if token_id not in self.roles:
            return Found(record, None, {})
        user = User(id="u-" + token_id, email=f"{token_id}@example.com", created_at=now(),
                    role=self.platform.get(token_id, "member"))  # fmt: skip
        return Found({**record, "userId": user.id}, user, self.roles[token_id])


async def _nothing(_: bytes) -> None:
    return None


Round = tuple[RevocationTicker, EventHub, ByteStreamSlots, Users]
#: An event stream of a machine of instance ``i``, and what a terminal on it takes.
READ, EXEC = Reach("i", MACHINES_READ), Reach("i", MACHINES_EXEC)


def _round(revoked: set[str], *, connected: bool = True, interval_s: float = 0.5,
           changes: CallerChanges | None = None, audit: Any = None,
           clock: Clock = SYSTEM_CLOCK) -> Round:  # fmt: skip
    tokens = Users(revoked)
    store: Any = SimpleNamespace(users=tokens, caller_changes=changes or CallerChanges())
    bus: Any = SimpleNamespace(nc=SimpleNamespace(is_connected=connected))
    hub = EventHub(bus, store, max_per_token=10, max_streams=10)
    slots = ByteStreamSlots(per_token=10)
    return RevocationTicker(store, hub, slots, interval_s, audit, clock), hub, slots, tokens


async def test_a_revoked_token_loses_its_event_and_byte_streams_in_one_round() -> None:
    ticker, hub, slots, tokens = _round({"gone"})
    gone, kept = Caller("gone", admin=False, instance_id="i"), Caller("kept", admin=False)
    events = [hub.open(gone, None, READ), hub.open(kept, None, READ)]
    streams = [ByteStream("a" * 32, _nothing), ByteStream("b" * 32, _nothing)]
    for caller, stream in zip((gone, kept), streams, strict=True):
        slots.take(caller)
        slots.hold(caller, stream, EXEC)
    await ticker.tick()
    assert events[0].ended.is_set()
    assert not events[1].ended.is_set()
    assert isinstance(streams[0].error, StreamAborted)
    assert streams[1].error is None
    assert sorted(tokens.lookups) == ["gone", "kept"]  # once each, for both kinds of stream


async def test_a_lost_bus_ends_every_event_stream_and_revocation_still_runs() -> None:
    ticker, hub, slots, _ = _round({"gone"}, connected=False)
    kept = hub.open(Caller("kept", admin=False), None, READ)
    gone = Caller("gone", admin=False)
    stream = ByteStream("a" * 32, _nothing)
    slots.take(gone)
    slots.hold(gone, stream, EXEC)
    await ticker.tick()
    assert kept.ended.is_set()
    assert kept.error is not None
    assert isinstance(stream.error, StreamAborted)


async def test_a_change_to_callers_runs_a_round_at_once_not_at_the_next_tick() -> None:
    changes = CallerChanges()
    ticker, hub, _, tokens = _round(set(), interval_s=3600, changes=changes)
    stream = hub.open(Caller("gone", admin=False), None, READ)
    async with ticker:
        tokens.revoked.add("gone")
        changes.heard()  # written here, or announced by another replica
        async with asyncio.timeout(5):
            await stream.ended.wait()
        assert tokens.lookups == ["gone"]
    changes.heard()  # after the ticker stopped: nothing is watching


async def test_a_revocation_whose_notice_was_lost_cuts_at_the_next_round_of_the_clock() -> None:
    """No change heard (a notice lost): the token's stream ends at the round
    ``FLEET_REVOCATION_ROUND_S`` after the last, not before."""
    clock = ManualClock()
    ticker, hub, _, tokens = _round(set(), interval_s=30.0, clock=clock)
    stream = hub.open(Caller("gone", admin=False), None, READ)
    async with ticker:
        await clock.advance(30.0)  # a round: the token stands
        assert tokens.lookups == ["gone"]
        tokens.revoked.add("gone")  # and nothing told of it
        await clock.advance(30.0 - TICK)
        assert not stream.ended.is_set()
        await clock.advance(TICK)
        assert stream.ended.is_set()
        assert tokens.lookups == ["gone", "gone"]


async def test_streams_still_letting_go_are_not_cut_again_by_the_next_round() -> None:
    """A disable is two changes (the user, their sessions): two rounds back to back, before the
    first round's streams have let go of their slots. The cut is one audit entry."""
    cuts: list[dict[str, Any]] = []
    audit = SimpleNamespace(record=lambda action, **kw: cuts.append(kw["params"]))
    ticker, hub, slots, _ = _round({"gone"}, audit=audit)
    gone = Caller("gone", admin=False)
    hub.open(gone, None, READ)
    slots.take(gone)
    slots.hold(gone, ByteStream("a" * 32, _nothing), EXEC)
    await ticker.tick()
    await ticker.tick()  # the stream and the event stream are still held
    assert cuts == [{"eventStreams": 1, "byteStreams": 1}]


async def test_a_removed_or_demoted_member_loses_what_their_roles_no_longer_hold() -> None:
    """A developer of ``i`` follows its machine's events and holds a terminal; an admin follows
    every machine. Demoted to viewer, the developer keeps looking and loses the terminal;
    removed, loses the events too; the admin demoted to member loses every machine's events.
    A member of another instance keeps all of theirs."""
    ticker, hub, slots, users = _round(set())
    users.roles = {"dev": {"i": "developer"}, "other": {"j": "developer"}, "boss": {}}
    users.platform["boss"] = "admin"
    dev, other = Caller("dev", admin=False, user_id="u-dev"), Caller("other", admin=False)
    boss = Caller("boss", admin=True, user_id="u-boss", role="admin")
    watching = hub.open(dev, "m-1", READ)
    everything = hub.open(boss, None, EVERYWHERE)
    theirs = hub.open(other, "m-2", Reach("j", MACHINES_READ))
    term, their_term = ByteStream("a" * 32, _nothing), ByteStream("b" * 32, _nothing)
    for caller, stream, reach in ((dev, term, EXEC), (other, their_term, Reach("j", EXEC[1]))):
        slots.take(caller)
        slots.hold(caller, stream, reach)
    await ticker.tick()
    assert term.error is None  # nothing changed yet
    assert not watching.ended.is_set()

    users.roles["dev"] = {"i": "viewer"}
    await ticker.tick()
    assert isinstance(term.error, StreamAborted)
    assert not watching.ended.is_set()  # a viewer may look

    users.roles["dev"] = {}
    await ticker.tick()
    assert watching.ended.is_set()
    assert isinstance(watching.error, Forbidden)  # the client is told why
    assert not everything.ended.is_set()

    users.platform["boss"] = "member"
    await ticker.tick()
    assert everything.ended.is_set()
    assert not theirs.ended.is_set()
    assert their_term.error is None
