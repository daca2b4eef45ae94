"""Which user a sign-in is, through the real OpenID provider in its default configuration
(tests/oidc/provider.mjs: the ID token carries ``sub``, the email and groups come from
UserInfo), behind a front that keeps its ID tokens and may forge its UserInfo answer
(tests/oidc_front.py).

The attacks: an email the provider does not vouch for, set to an admin's (``email_verified``
false, or not sent, as Microsoft Entra ID never does, without ``FLEET_OIDC_TRUST_EMAIL``:
tests/integration/test_signin_trust_email.py has it on); a second account of
the provider whose verified email is a bound user's (through the browser and ``fleet login``'s
device flow); a UserInfo answer about another subject. Each is refused with 1080 and its
``data.reason``, and no user's subject changes."""

from __future__ import annotations

from typing import Any

import aiohttp
import jwt
import msgspec
import pytest

from contracts.errors import IdTokenRejected
from contracts.gateway.people import User
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.integration.test_audit_attacks import fronted
from tests.integration.test_people_oidc import browser
from tests.oidc_front import Front
from tests.oidc_provider import ADMIN_GROUP, CLIENT_ID, CLIENT_SECRET, approve_device, sign_in

__all__ = ["fronted"]


@pytest.fixture
def stack_settings(settings: Settings, fronted: tuple[str, Front]) -> Settings:
    return msgspec.structs.replace(
        settings, oidc_issuer=fronted[0], oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET, oidc_admin_groups=ADMIN_GROUP,
    )  # fmt: skip


async def refusal(answer: aiohttp.ClientResponse) -> tuple[int, int, str]:
    """(HTTP status, error code, data.reason) of the gateway's answer."""
    if answer.status == 302:  # signed in
        return answer.status, 0, answer.headers["Location"]
    error = (await answer.json())["error"]
    return answer.status, error["code"], error.get("data", {}).get("reason", "")


async def me(s: aiohttp.ClientSession, base: str) -> tuple[int, dict[str, Any]]:
    async with s.get(f"{base}/auth/me") as r:
        return r.status, await r.json()


async def user(stack: FleetClient, email: str) -> User:
    (found,) = [u for u in await stack.list_users() if u.email == email]
    return found


async def test_an_unverified_email_is_linked_to_no_user(
    stack: FleetClient, settings: Settings, fronted: tuple[str, Front]
) -> None:
    base, issuer = f"http://127.0.0.1:{settings.port}", fronted[0]
    carol = await stack.create_user("carol@example.com", role="admin")
    for login in ("eve-as-carol", "carol-entra"):  # email_verified false; not sent
        async with browser() as s:
            answer, _ = await sign_in(s, f"{base}/auth/login", login)
            assert await refusal(answer) == (401, IdTokenRejected.code, "email-unverified")
            assert (await me(s, base))[0] == 401
    said = [info.get("email_verified", "not sent") for info in fronted[1].userinfos]
    assert said == [False, "not sent"]
    assert (await user(stack, "carol@example.com")).subject is None
    assert len(await stack.list_users()) == 1  # and none made for eve
    async with browser() as s:  # carol herself is linked, once
        answer, _ = await sign_in(s, f"{base}/auth/login", "carol")
        assert answer.status == 302, await answer.text()
        status, body = await me(s, base)
        assert (status, body["id"], body["role"]) == (200, carol.id, "admin")
    assert (await user(stack, "carol@example.com")).subject == f"{issuer} carol"


async def test_a_second_account_with_a_bound_users_verified_email_is_refused(
    stack: FleetClient, settings: Settings, fronted: tuple[str, Front]
) -> None:
    base, issuer = f"http://127.0.0.1:{settings.port}", fronted[0]
    await stack.create_user("carol@example.com", role="admin")
    async with browser() as s:
        answer, _ = await sign_in(s, f"{base}/auth/login", "carol")
        assert answer.status == 302, await answer.text()
    async with browser() as s:
        answer, _ = await sign_in(s, f"{base}/auth/login", "carol-second")
        assert await refusal(answer) == (401, IdTokenRejected.code, "account-bound")
        assert (await me(s, base))[0] == 401
        # fleet login's device flow: no token for carol either
        async with s.post(f"{base}/auth/device") as r:
            codes = await r.json()
        await approve_device(s, codes["verificationUriComplete"], "carol-second")
        async with s.post(f"{base}/auth/device/token",
                          json={"deviceCode": codes["deviceCode"]}) as r:  # fmt: skip
            assert await refusal(r) == (401, IdTokenRejected.code, "account-bound")
    assert (await user(stack, "carol@example.com")).subject == f"{issuer} carol"
    assert await stack.list_tokens() == []


async def test_sign_in_takes_the_claims_the_id_token_lacks_from_userinfo(
    stack: FleetClient, settings: Settings, fronted: tuple[str, Front]
) -> None:
    base, front = f"http://127.0.0.1:{settings.port}", fronted[1]
    async with browser() as s:
        answer, _ = await sign_in(s, f"{base}/auth/login", "ann")
        assert answer.status == 302, await answer.text()
        status, body = await me(s, base)
    (id_token,) = front.id_tokens
    claims = jwt.decode(id_token, options={"verify_signature": False})
    assert not {"email", "email_verified", "groups"} & claims.keys()  # the provider's default
    # the email and the admin group (FLEET_OIDC_ADMIN_GROUPS) came from UserInfo
    assert (status, body["email"], body["role"]) == (200, "ann@example.com", "admin")


async def test_a_userinfo_answer_about_another_subject_is_refused(
    stack: FleetClient, settings: Settings, fronted: tuple[str, Front]
) -> None:
    base, front = f"http://127.0.0.1:{settings.port}", fronted[1]
    front.forge = "userinfo-sub"
    async with browser() as s:
        answer, _ = await sign_in(s, f"{base}/auth/login", "bob")
        assert await refusal(answer) == (401, IdTokenRejected.code, "userinfo")
        assert (await me(s, base))[0] == 401
    assert await stack.list_users() == []
