"""events.ticket: a short-lived, single-use stand-in for a token, spent by GET /events."""

from __future__ import annotations

import pytest

from contracts.people import ALL_SCOPES, MACHINES_READ
from services.gateway.auth import Caller, EventTickets, current_caller
from tests.fast.conftest import World

method = pytest.mark.gateway_method


@method("events.ticket")
async def test_a_ticket_acts_as_its_token_once(world: World) -> None:
    inst = await world.instance()
    token, _secret = await world.api.tokens.create(
        "ci", scopes=ALL_SCOPES, instance_ids=[inst.id], user_id=None, expires_at=None
    )
    mine = Caller(token_id=token.id, admin=False, instance_id=inst.id)
    issued = await world.rpc("events.ticket", {}, mine)
    assert issued["expiresInS"] == world.settings.events_ticket_ttl_s
    tickets = EventTickets(world.store, world.settings.events_ticket_ttl_s)
    now = await current_caller(world.store, token.id)  # the token's caller as stored now
    assert now is not None
    assert await tickets.redeem(issued["ticket"]) == now.doing(MACHINES_READ)
    assert await tickets.redeem(issued["ticket"]) is None  # spent
    assert await tickets.redeem("evt_made-up") is None
    assert await tickets.redeem("fleet_not-a-ticket") is None


@method("events.ticket")
async def test_a_ticket_of_a_revoked_token_is_refused(world: World) -> None:
    inst = await world.instance()
    token, _secret = await world.api.tokens.create(
        "ci", scopes=ALL_SCOPES, instance_ids=[inst.id], user_id=None, expires_at=None
    )
    mine = Caller(token_id=token.id, admin=False, instance_id=inst.id)
    issued = await world.rpc("events.ticket", {}, mine)
    await world.api.tokens.revoke(token.id)
    tickets = EventTickets(world.store, world.settings.events_ticket_ttl_s)
    assert await tickets.redeem(issued["ticket"]) is None
