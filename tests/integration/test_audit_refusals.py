"""Refused tokens in the audit log, read back through ``audit.list`` and ``fleet audit``: a
token used outside its scope, outside its instance and after its expiry; and a flood of made-up
tokens, of which only the refusal gate's budget are entries of their own, the rest counted in
one ``audit.suppressed`` entry."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
import msgspec
import pytest

from contracts.errors import Forbidden, Unauthorized
from contracts.gateway import audit as a
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.integration.test_audit import fleet_audit
from tests.integration.test_audit_attacks import entries
from tests.waiters import wait_until

#: Entries of refusals that authenticate as no one, per address per minute, in these tests.
BUDGET = 5
FLOOD = 20


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, audit_unauthenticated_per_min=BUDGET,
                                   audit_suppressed_every_s=0.5)  # fmt: skip


async def test_a_token_outside_its_scope_or_instance_or_after_expiry_is_audited(
    stack: FleetClient, settings: Settings
) -> None:
    mine, other = await stack.create_instance("mine"), await stack.create_instance("other")
    reader = await stack.create_scoped_token("reader", scopes=["machines:read"],
                                             instance_ids=[mine.id])  # fmt: skip
    brief = await stack.create_scoped_token("brief", instance_ids=[mine.id], expires_in_s=1)
    async with FleetClient(stack.url, reader.token) as r:
        with pytest.raises(Forbidden):  # outside its scope (a read)
            await r.list_env(mine.id)
        with pytest.raises(Forbidden):  # outside its scope (a change)
            await r.set_env("X", "y", mine.id)
        with pytest.raises(Forbidden):  # outside its instance
            await r.get_instance(other.id)
    (expiry,) = [t.expires_at for t in await stack.list_tokens() if t.id == brief.id]
    assert expiry is not None

    async def expired() -> bool:
        return datetime.now(UTC) > expiry

    await wait_until(expired, timeout=5)
    async with FleetClient(stack.url, brief.token) as b:
        with pytest.raises(Unauthorized):
            await b.list_env(mine.id)

    got = await entries(stack, 3, actor=reader.id)
    assert sorted((e.method, e.instance_id, e.error_code) for e in got) == sorted([
        ("env.list", mine.id, Forbidden.code), ("env.set", mine.id, Forbidden.code),
        ("instances.get", other.id, Forbidden.code)])  # fmt: skip
    (late,) = await entries(stack, 1, actor=brief.id)
    assert (late.method, late.token_id, late.error_code) == ("env.list", brief.id,
                                                             Unauthorized.code)  # fmt: skip
    assert late.error == f"token {brief.id} has expired"

    cli = await fleet_audit(settings, "--actor", reader.id)
    assert sorted(e["method"] for e in cli) == ["env.list", "env.set", "instances.get"]
    assert {e["errorCode"] for e in cli} == {Forbidden.code}
    (cli_late,) = await fleet_audit(settings, "--actor", brief.id)
    assert (cli_late["method"], cli_late["error"]) == ("env.list", late.error)


async def test_a_flood_of_made_up_tokens_is_bounded_and_counted(
    stack: FleetClient, settings: Settings
) -> None:
    base = f"http://127.0.0.1:{settings.port}"
    body = {"jsonrpc": "2.0", "id": 1, "method": "env.list", "params": {}}
    async with aiohttp.ClientSession() as s:
        for i in range(FLOOD):
            headers = {"Authorization": f"Bearer fleet_made-up-{i}"}
            async with s.post(f"{base}/rpc", json=body, headers=headers) as r:
                assert r.status == 401

    counted: list[a.AuditEntry] = []

    async def all_counted() -> bool:
        counted[:] = await stack.audit(method=a.Action.SUPPRESSED)
        return sum(int(e.params["count"]) for e in counted) == FLOOD - BUDGET

    await wait_until(all_counted, timeout=10)
    own = await stack.audit(method="env.list")
    assert len(own) == BUDGET
    assert {(e.actor, e.error_code, e.client_address) for e in own} == {
        ("anonymous", Unauthorized.code, "127.0.0.1")}  # fmt: skip
    assert all(e.params["methods"] == {"env.list": e.params["count"]} for e in counted)
    assert all(e.params["addresses"] == {"127.0.0.1": e.params["count"]} for e in counted)

    cli = await fleet_audit(settings, "--method", a.Action.SUPPRESSED)
    assert sum(e["params"]["count"] for e in cli) == FLOOD - BUDGET
    assert len(await fleet_audit(settings, "--method", "env.list")) == BUDGET
