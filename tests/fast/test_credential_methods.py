"""A method that mints a credential (a token, a ticket: a field of its result whose type is
marked a credential, ``contracts.credentials``) is a write, never ``reads``: the audit log
records who was given one, as it records every other write."""

from __future__ import annotations

import msgspec
import pytest

from contracts.credentials import credential_paths, field_paths
from contracts.gateway.audit import REDACTED, REDACTIONS, Redact
from contracts.gateway.rpc import GATEWAY_METHODS
from controlplane.settings import Settings
from services.gateway.auth import AuditLog, Caller
from tests.fast.conftest import World

#: What the audit log redacts by name as a secret but no method mints: ``value`` is what a
#: caller gave (an env var's value) or an error's value.
NOT_MINTED = {"value"}


def test_a_method_whose_result_holds_a_credential_is_no_read() -> None:
    minting = {s.name: s for s in GATEWAY_METHODS if credential_paths(s.result)}
    # The walk finds the methods it is about (it is not vacuous).
    assert {"tokens.create", "events.ticket", "machines.previewTicket"} <= set(minting)
    reads = sorted(name for name, spec in minting.items() if spec.reads)
    assert not reads, f"methods that mint a credential marked reads=True: {reads}"


def test_a_result_field_named_as_a_credential_is_marked_one() -> None:
    """The audit log redacts a field by its name (``REDACTIONS``); a result's field under a
    credential's name (token, ticket, secret, ...) must carry the mark, so that a method added
    later that mints one is found by the rule above."""
    credential_names = {name for name, rule in REDACTIONS.items() if rule is Redact.SECRET}
    unmarked = []
    for spec in GATEWAY_METHODS:
        marked = set(credential_paths(spec.result))
        for path in field_paths(spec.result):
            name = path.rsplit(".", 1)[-1].removesuffix("[]")
            if name in credential_names - NOT_MINTED and path not in marked:
                unmarked.append(f"{spec.name}: {path}")
    assert not unmarked, f"result fields named as credentials, not marked one: {unmarked}"


@pytest.mark.gateway_method("events.ticket")
async def test_minting_an_events_ticket_is_recorded_without_the_ticket(
    world: World, settings: Settings
) -> None:
    log = AuditLog(settings, world.store)
    world.reconfigure(audit=log)
    inst = (await world.instance()).id
    mine = Caller(token_id="t-00000000000000aa", admin=False, instance_id=inst)
    issued = await world.rpc("events.ticket", {}, mine)
    (entry,) = [e for e in log.buffered() if e.method == "events.ticket"]
    assert (entry.actor, entry.token_id, entry.ok) == ("t-00000000000000aa", "t-00000000000000aa",
                                                        True)  # fmt: skip
    assert entry.result["ticket"] == REDACTED
    assert issued["ticket"] not in msgspec.json.encode(entry).decode()
