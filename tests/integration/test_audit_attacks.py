"""Attacks on sign-in, each refused with its named error and an audit entry read back through
``audit.list`` and ``fleet audit``: forged ID tokens delivered through the real callback (the
real provider behind a front that forges its token answer: tests/oidc_front.py), a replayed
state, and a cookie-authenticated POST without its CSRF token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from contracts.errors import CsrfRejected, IdTokenRejected, SignInStateRejected
from contracts.gateway import audit as a
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.integration.test_audit import fleet_audit
from tests.integration.test_people_oidc import browser, rpc
from tests.oidc_front import Front, fronted_provider
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, sign_in
from tests.waiters import wait_until

#: Each forgery, the check that refuses it (IdTokenRejected's data.reason), and words of the
#: refusal's message, which the entry keeps.
FORGERIES = (
    ("other-key", "signature", "Signature verification failed"),
    ("none", "algorithm", "'none' is not allowed"),
    ("audience", "audience", "Audience"),
    ("expired", "expired", "expired"),
    ("nonce", "nonce", "nonce"),
)


@pytest.fixture
async def fronted() -> AsyncIterator[tuple[str, Front]]:
    async with fronted_provider() as got:
        yield got


@pytest.fixture
def stack_settings(settings: Settings, fronted: tuple[str, Front]) -> Settings:
    return msgspec.structs.replace(settings, oidc_issuer=fronted[0], oidc_client_id=CLIENT_ID,
                                   oidc_client_secret=CLIENT_SECRET)  # fmt: skip


async def entries(stack: FleetClient, count: int, **filters: Any) -> list[a.AuditEntry]:
    """The newest entries that match, once there are ``count`` (stored off the call path)."""
    found: list[a.AuditEntry] = []

    async def stored() -> bool:
        found[:] = await stack.audit(**filters)
        return len(found) >= count

    await wait_until(stored, timeout=10)
    return found


async def test_forged_id_tokens_a_replayed_state_and_a_csrf_less_post_are_refused_and_audited(
    stack: FleetClient, settings: Settings, fronted: tuple[str, Front]
) -> None:
    base, front = f"http://127.0.0.1:{settings.port}", fronted[1]
    for forge, reason, _ in FORGERIES:
        front.forge = forge
        async with browser() as s:
            answer, _ = await sign_in(s, f"{base}/auth/login", "eve")
            error = (await answer.json())["error"]
        assert (error["code"], error["data"]["reason"]) == (IdTokenRejected.code, reason), forge
    front.forge = None
    async with browser() as s:
        answer, callback = await sign_in(s, f"{base}/auth/login", "eve")
        assert answer.status == 302, await answer.text()  # the real token signs in
        async with s.get(callback) as replayed:
            assert (await replayed.json())["error"]["code"] == SignInStateRejected.code
        async with s.get(f"{base}/auth/me") as r:
            me = await r.json()
        status, refused = await rpc(s, base, "env.set", {"name": "X", "value": "y"}, None)
        assert (status, refused["error"]["code"]) == (403, CsrfRejected.code)

    signins = await entries(stack, 7, method=a.Action.SIGN_IN)
    refusals = [e for e in reversed(signins) if not e.ok]
    assert [e.error_code for e in refusals] == [IdTokenRejected.code] * 5 + [
        SignInStateRejected.code
    ]
    for got, (forge, _, words) in zip(refusals, FORGERIES, strict=False):
        assert words in (got.error or ""), (forge, got.error)
        assert (got.actor, got.client_address) == ("anonymous", "127.0.0.1")
    assert [e.actor for e in signins if e.ok] == [me["id"]]
    (csrf,) = await entries(stack, 1, method="env.set")
    assert (csrf.actor, csrf.ok, csrf.error_code) == (me["id"], False, CsrfRejected.code)
    assert (csrf.token_id or "").startswith("ws-")  # the session, by its id

    # The same entries through the CLI.
    cli = await fleet_audit(settings, "--method", a.Action.SIGN_IN)
    assert sorted(e["errorCode"] or 0 for e in cli) == sorted(e.error_code or 0 for e in signins)
    assert {e["error"] for e in cli if not e["ok"]} == {e.error for e in refusals}
    (cli_csrf,) = await fleet_audit(settings, "--method", "env.set", "--actor", me["id"])
    assert (cli_csrf["errorCode"], cli_csrf["tokenId"]) == (CsrfRejected.code, csrf.token_id)
