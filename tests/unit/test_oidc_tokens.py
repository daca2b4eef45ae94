"""The ID token's checks, each attack refused with its named reason: hostile tokens made with
the same JOSE library (PyJWT) and fed to ``validate_id_token``; the provider's keys come from
``Keys``, fetched again for an unknown key id, at most once per window (the happy path through
a real provider: tests/integration/test_people_oidc.py)."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from contracts.errors import IdTokenRejected
from services.gateway.console.oidc import REFETCH_EVERY_S, Keys, validate_id_token, with_userinfo
from tests.fakes.clock import TICK, ManualClock

ISSUER, CLIENT, NONCE = "https://idp.example.com", "fleet", "n-0123456789"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk_of(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    public: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**public, "kid": kid, "use": "sig", "alg": "RS256"}


class Provider:
    """Its key set (which a test rotates) and how often it was fetched."""

    def __init__(self, *keys: tuple[rsa.RSAPrivateKey, str]) -> None:
        self.jwks = {"keys": [jwk_of(k, kid) for k, kid in keys]}
        self.fetches = 0

    async def fetch(self) -> dict[str, Any]:
        self.fetches += 1
        return self.jwks


def claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": CLIENT, "sub": "ann", "iat": now, "exp": now + 300,
            "nonce": NONCE, "email": "ann@example.com", **over}  # fmt: skip


def signed(key: rsa.RSAPrivateKey, kid: str, **over: Any) -> str:
    return jwt.encode(claims(**over), key, algorithm="RS256", headers={"kid": kid})


async def check(token: str, keys: Keys, nonce: str = NONCE) -> dict[str, Any]:
    return await validate_id_token(token, keys, issuer=ISSUER, client_id=CLIENT, nonce=nonce)


async def refused(token: str, keys: Keys, nonce: str = NONCE) -> str:
    with pytest.raises(IdTokenRejected) as no:
        await check(token, keys, nonce)
    assert no.value.data is not None
    return str(no.value.data["reason"])


async def test_each_forged_or_stale_id_token_is_refused_by_name() -> None:
    key, other = rsa_key(), rsa_key()
    keys = Keys(Provider((key, "k1")).fetch)
    assert (await check(signed(key, "k1"), keys))["sub"] == "ann"
    assert await refused(signed(other, "k1"), keys) == "signature"  # another key, our kid
    unsigned = jwt.encode(claims(), None, algorithm="none", headers={"kid": "k1"})
    assert await refused(unsigned, keys) == "algorithm"
    hmac_signed = jwt.encode(claims(), "the-client-secret-" + "x" * 32, algorithm="HS256",
                             headers={"kid": "k1"})  # fmt: skip
    assert await refused(hmac_signed, keys) == "algorithm"
    assert await refused(signed(key, "k1", aud="someone-else"), keys) == "audience"
    assert await refused(signed(key, "k1", iss="https://evil.example.com"), keys) == "issuer"
    old = int(time.time()) - 3600
    assert await refused(signed(key, "k1", iat=old, exp=old + 300), keys) == "expired"
    ahead = int(time.time()) + 600
    assert await refused(signed(key, "k1", iat=ahead, exp=ahead + 300), keys) == "issued-at"
    assert await refused(signed(key, "k1"), keys, nonce="n-another") == "nonce"
    no_nonce = {k: v for k, v in claims().items() if k != "nonce"}
    bare = jwt.encode(no_nonce, key, algorithm="RS256", headers={"kid": "k1"})
    assert await refused(bare, keys) == "nonce"
    assert await refused("not.a.jwt", keys) == "signature"


async def test_rotated_keys_are_fetched_again_but_not_for_every_unknown_kid() -> None:
    old, new = rsa_key(), rsa_key()
    provider = Provider((old, "old"))
    keys = Keys(provider.fetch, refetch_every_s=0.0)
    await check(signed(old, "old"), keys)
    provider.jwks = {"keys": [jwk_of(new, "new")]}  # the provider rotated
    assert (await check(signed(new, "new"), keys))["sub"] == "ann"
    assert provider.fetches == 2
    bounded = Keys(provider.fetch, refetch_every_s=3600.0)
    await check(signed(new, "new"), bounded)
    before = provider.fetches
    for i in range(20):  # made-up key ids: at most one fetch per window
        assert await refused(signed(new, f"made-up-{i}"), bounded) == "signature"
    assert provider.fetches == before


async def test_a_key_rotated_in_the_window_is_fetched_at_its_end_not_before() -> None:
    """The refetch interval on a manual clock: a key id the provider got within
    ``REFETCH_EVERY_S`` of the last fetch is refused (nothing fetched) until the interval is
    over, and then fetched once."""
    clock = ManualClock()
    old, new = rsa_key(), rsa_key()
    provider = Provider((old, "old"))
    keys = Keys(provider.fetch, clock=clock)
    await check(signed(old, "old"), keys)
    provider.jwks = {"keys": [jwk_of(new, "new")]}  # the provider rotated
    await clock.advance(REFETCH_EVERY_S - TICK)
    assert await refused(signed(new, "new"), keys) == "signature"
    assert provider.fetches == 1
    await clock.advance(TICK)
    assert (await check(signed(new, "new"), keys))["sub"] == "ann"
    assert provider.fetches == 2
    assert await refused(signed(new, "made-up"), keys) == "signature"  # a new window began
    assert provider.fetches == 2


def test_userinfo_gives_what_the_id_token_lacks_and_only_about_its_subject() -> None:
    token = {"iss": ISSUER, "sub": "ann", "name": "Ann"}
    info = {"sub": "ann", "email": "ann@example.com", "email_verified": True, "name": "Other",
            "groups": ["ops"], "iss": "https://elsewhere"}  # fmt: skip
    assert with_userinfo(token, info) == {"iss": ISSUER, "sub": "ann", "name": "Ann",
                                          "email": "ann@example.com", "email_verified": True,
                                          "groups": ["ops"]}  # fmt: skip
    for other in ({**info, "sub": "eve"}, {k: v for k, v in info.items() if k != "sub"}):
        with pytest.raises(IdTokenRejected) as no:
            with_userinfo(token, other)
        assert no.value.data == {"reason": "userinfo"}


def test_an_email_verified_counts_only_for_its_own_email() -> None:
    token = {"iss": ISSUER, "sub": "ann", "email": "ann@example.com"}
    vouched = {"sub": "ann", "email": "ann@example.com", "email_verified": True}
    assert with_userinfo(token, vouched)["email_verified"] is True
    elsewhere = {"sub": "ann", "email": "ann@elsewhere.example", "email_verified": True}
    assert "email_verified" not in with_userinfo(token, elsewhere)
    unverified = {**token, "email_verified": False}
    assert with_userinfo(unverified, vouched)["email_verified"] is False  # the token's own
