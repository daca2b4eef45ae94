"""``FLEET_OIDC_TRUST_EMAIL`` on, through the real OpenID provider behind its front
(tests/oidc_front.py): carol's account at a provider that never sends ``email_verified`` (as
Microsoft Entra ID) signs in as the user an admin made for her, once; an account whose
provider says its email is not verified is still refused, and another account with carol's
email after she signed in is refused too (tests/integration/test_signin_accounts.py: the same
Entra-style sign-in refused with the setting off)."""

from __future__ import annotations

import msgspec
import pytest

from contracts.errors import IdTokenRejected
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.integration.test_audit_attacks import fronted
from tests.integration.test_people_oidc import browser
from tests.integration.test_signin_accounts import me, refusal, user
from tests.oidc_front import Front
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, sign_in

__all__ = ["fronted"]


@pytest.fixture
def stack_settings(settings: Settings, fronted: tuple[str, Front]) -> Settings:
    return msgspec.structs.replace(
        settings, oidc_issuer=fronted[0], oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET, oidc_trust_email=True,
    )  # fmt: skip


async def test_an_entra_style_sign_in_binds_the_admin_made_user_once_with_the_setting(
    stack: FleetClient, settings: Settings, fronted: tuple[str, Front]
) -> None:
    base, (issuer, front) = f"http://127.0.0.1:{settings.port}", fronted
    carol = await stack.create_user("carol@example.com", role="admin")
    async with browser() as s:  # the provider says false: the setting does not overrule it
        answer, _ = await sign_in(s, f"{base}/auth/login", "eve-as-carol")
        assert await refusal(answer) == (401, IdTokenRejected.code, "email-unverified")
    assert (await user(stack, "carol@example.com")).subject is None
    for _ in range(2):  # bound by her email, then found by her subject
        async with browser() as s:
            answer, _ = await sign_in(s, f"{base}/auth/login", "carol-entra")
            assert answer.status == 302, await answer.text()
            status, body = await me(s, base)
            assert (status, body["id"], body["role"]) == (200, carol.id, "admin")
    assert "email_verified" not in front.userinfos[-1]
    assert front.userinfos[-1]["email"] == "carol@example.com"
    async with browser() as s:  # her email is hers now: another account with it is not her
        answer, _ = await sign_in(s, f"{base}/auth/login", "carol-second")
        assert await refusal(answer) == (401, IdTokenRejected.code, "account-bound")
    assert (await user(stack, "carol@example.com")).subject == f"{issuer} carol-entra"
    assert len(await stack.list_users()) == 1
