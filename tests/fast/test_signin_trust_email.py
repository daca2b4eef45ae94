"""``FLEET_OIDC_TRUST_EMAIL``: a provider that never sends ``email_verified`` (Microsoft Entra
ID) may sign in users by email when the operator says so. Only a claim the provider leaves
out is trusted; one it sends other than true is refused as without the setting, and an email
still binds only a user an admin made who never signed in."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from contracts.errors import IdTokenRejected
from services.gateway.console import SignIn, WebSessions
from services.gateway.rpc.people import find_user
from tests.fast.conftest import World


def unsaid(sub: str, email: str, **more: Any) -> dict[str, Any]:
    """Validated claims of a provider that sends an email and no ``email_verified``."""
    return {"iss": "https://idp", "sub": sub, "email": email, **more}


def signin(world: World, *, trust: bool) -> SignIn:
    settings = msgspec.structs.replace(world.settings, oidc_trust_email=trust)
    return SignIn(world.store, settings, None, WebSessions(world.store, settings))


async def test_an_unsaid_email_verified_is_refused_unless_the_operator_trusts_the_email(
    world: World,
) -> None:
    dana = await world.rpc("users.create", {"email": "dana@example.com", "role": "admin"})
    with pytest.raises(IdTokenRejected) as no:
        await signin(world, trust=False).user_of(unsaid("d1", "dana@example.com"))
    assert no.value.data == {"reason": "email-unverified"}
    assert (await find_user(world.store, "dana@example.com")).subject is None
    trusting = signin(world, trust=True)
    bound = await trusting.user_of(unsaid("d1", "dana@example.com"))
    assert (bound.id, bound.role, bound.subject) == (dana["id"], "admin", "https://idp d1")
    made = await trusting.user_of(unsaid("f1", "frank@example.com"))  # no such user: made
    assert (made.email, made.role, made.subject) == ("frank@example.com", "member",
                                                     "https://idp f1")  # fmt: skip


async def test_a_trusted_email_binds_no_user_who_signed_in_and_none_said_unverified(
    world: World,
) -> None:
    trusting = signin(world, trust=True)
    carol = await world.rpc("users.create", {"email": "carol@example.com", "role": "admin"})
    for verified in (False, "false", "False", 0, 1, ""):
        claims = unsaid("eve", "carol@example.com", email_verified=verified)
        with pytest.raises(IdTokenRejected) as no:
            await trusting.user_of(claims)
        assert no.value.data == {"reason": "email-unverified"}, verified
    assert (await find_user(world.store, "carol@example.com")).subject is None
    bound = await trusting.user_of(unsaid("c1", "carol@example.com"))
    assert bound.id == carol["id"]
    with pytest.raises(IdTokenRejected) as no:  # carol signed in: another account is not her
        await trusting.user_of(unsaid("c2", "carol@example.com"))
    assert no.value.data == {"reason": "account-bound"}
    await trusting.user_of(unsaid("g1", "gil@example.com"))  # made by signing in
    with pytest.raises(IdTokenRejected) as no:
        await trusting.user_of(unsaid("g2", "gil@example.com"))
    assert no.value.data == {"reason": "account-bound"}
    assert (await find_user(world.store, "carol@example.com")).subject == "https://idp c1"
    assert (await find_user(world.store, "gil@example.com")).subject == "https://idp g1"
