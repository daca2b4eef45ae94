"""OpenID Connect: the provider's discovery document and keys, the authorization request
(code flow with PKCE, ``state`` and ``nonce``), the code exchange, the ID token's checks, and
the claims it lacks from UserInfo.

JOSE is PyJWT's (``jwt``, with ``cryptography``): a maintained library already in the
dependency tree (through ``mcp``), which checks signatures, ``exp``, ``iat``, ``iss`` and
``aud`` with a leeway; what it leaves to us is which algorithms to accept (an allow-list, never
``none``, and only the one the key's own header names), the nonce, and the token's age.

The provider's keys are fetched when a token names a key id we do not hold (the provider
rotated them), at most once per ``REFETCH_EVERY_S``: a stream of made-up key ids cannot make
the gateway hammer the provider.

A provider may give the scopes' claims (email, name, groups) from its UserInfo endpoint only,
whenever it issues an access token (OpenID Connect Core 5.4; node-oidc-provider's default):
those the ID token lacks are fetched there with the access token, and used only when UserInfo
is about the ID token's own subject (5.3.2).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

import aiohttp
import jwt
import msgspec
import structlog

from base.clock import SYSTEM_CLOCK, Clock
from contracts.errors import IdTokenRejected, Unavailable

log = structlog.get_logger(__name__)

#: Signing algorithms an ID token may use (asymmetric only: the client secret never signs).
ALLOWED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                      "EdDSA")  # fmt: skip
#: Clock skew allowed between us and the provider, either way.
SKEW_S = 60
#: An ID token older than this (by ``iat``) is refused, whatever its ``exp``.
MAX_AGE_S = 600
#: The provider's keys are fetched again for an unknown key id at most this often.
REFETCH_EVERY_S = 30.0
SCOPES = "openid email profile groups"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: The claims the gateway reads besides the ID token's own; those it lacks come from UserInfo.
USERINFO_CLAIMS = ("email", "email_verified", "name", "groups")


class Discovery(msgspec.Struct, frozen=True):
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    device_authorization_endpoint: str | None = None
    userinfo_endpoint: str | None = None


class Tokens(NamedTuple):
    """The token endpoint's answer: the ID token, and the access token for UserInfo."""

    id_token: str
    access_token: str | None


class Keys:
    """The provider's signing keys by id, fetched again (bounded, in ``clock``'s time) for an
    id it lacks."""

    def __init__(self, fetch: Callable[[], Awaitable[dict[str, Any]]],
                 refetch_every_s: float = REFETCH_EVERY_S,
                 clock: Clock = SYSTEM_CLOCK) -> None:  # fmt: skip
        self._fetch = fetch
        self._every = refetch_every_s
        self._clock = clock
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at: float | None = None

    async def key(self, kid: str | None) -> jwt.PyJWK | None:
        if kid not in self._keys and self._may_fetch():
            await self._refresh()
        if kid is None and len(self._keys) == 1:  # a provider with one key may omit its id
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    def _may_fetch(self) -> bool:
        if self._fetched_at is None:
            return True
        return self._clock.monotonic() - self._fetched_at >= self._every

    async def _refresh(self) -> None:
        self._fetched_at = self._clock.monotonic()
        keys: dict[str | None, jwt.PyJWK] = {}
        for jwk in (await self._fetch()).get("keys", []):
            if jwk.get("use", "sig") != "sig":
                continue
            try:
                keys[jwk.get("kid")] = jwt.PyJWK(jwk)
            except jwt.PyJWTError as exc:  # a key type we do not use: skip it, keep the rest
                log.info("oidc.key_skipped", kid=jwk.get("kid"), error=str(exc))
        self._keys = keys
        log.info("oidc.keys_fetched", count=len(keys))


def rejected(reason: str, message: str) -> IdTokenRejected:
    """A sign-in refused: 1080 ``IdTokenRejected``, ``data.reason`` naming the check."""
    return IdTokenRejected(f"ID token refused: {message}", data={"reason": reason})


_PYJWT_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.InvalidAudienceError, "audience"),
    (jwt.InvalidIssuerError, "issuer"),
    (jwt.ImmatureSignatureError, "issued-at"),
    (jwt.InvalidIssuedAtError, "issued-at"),
    (jwt.MissingRequiredClaimError, "claims"),
    (jwt.InvalidAlgorithmError, "algorithm"),
)


async def validate_id_token(
    raw: str, keys: Keys, *, issuer: str, client_id: str, nonce: str | None,
    now: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The ID token's claims, or ``IdTokenRejected`` naming the check it failed. ``nonce``
    None: a token from the device flow, which has none (the device code, which only the
    gateway that asked for it can redeem, binds it instead)."""
    try:
        header = jwt.get_unverified_header(raw)
    except jwt.PyJWTError as exc:
        raise rejected("signature", f"not a signed JWT ({exc})") from None
    alg = header.get("alg")
    if alg not in ALLOWED_ALGORITHMS:
        raise rejected("algorithm", f"algorithm {alg!r} is not allowed")
    key = await keys.key(header.get("kid"))
    if key is None:
        raise rejected("signature", f"no key {header.get('kid')!r} at the provider")
    try:
        claims: dict[str, Any] = jwt.decode(
            raw, key.key, algorithms=[alg], audience=client_id, issuer=issuer, leeway=SKEW_S,
            options={"require": ["iss", "aud", "exp", "iat", "sub"]},
        )  # fmt: skip
    except jwt.PyJWTError as exc:
        reason = next((r for cls, r in _PYJWT_REASONS if isinstance(exc, cls)), "signature")
        raise rejected(reason, str(exc)) from None
    now = time.time() if now is None else now
    if now - float(claims["iat"]) > MAX_AGE_S + SKEW_S:
        raise rejected("issued-at", "issued too long ago")
    aud = claims["aud"]
    if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != client_id:
        raise rejected("audience", "several audiences and we are not its authorized party")
    if nonce is not None and not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
        raise rejected("nonce", "its nonce is not this sign-in's")
    return claims


def with_userinfo(claims: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """The ID token's (validated) claims, with those of ``USERINFO_CLAIMS`` it lacks taken
    from the provider's UserInfo answer ``info``, which must be about the same subject. An
    ``email_verified`` counts only for the email of the answer that says it."""
    if info.get("sub") != claims["sub"]:
        raise rejected("userinfo", f"UserInfo is about subject {info.get('sub')!r}, "
                                   f"not the ID token's {claims['sub']!r}")  # fmt: skip
    got = {k: info[k] for k in USERINFO_CLAIMS if k in info} | claims
    source = claims if "email" in claims else info
    verified = source.get("email_verified")
    if verified is None and info.get("email") == source.get("email"):
        verified = info.get("email_verified")
    got.pop("email_verified", None)
    if verified is not None:
        got["email_verified"] = verified
    return got


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class OidcClient:
    """One provider, as this gateway's client: discovery and keys fetched when first needed,
    so the gateway starts (and serves tokens) while the provider is away. The keys' refetch
    interval and an ID token's age are ``clock``'s time."""

    def __init__(self, session: aiohttp.ClientSession, *, issuer: str, client_id: str,
                 client_secret: str, clock: Clock = SYSTEM_CLOCK) -> None:  # fmt: skip
        self._http = session
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self._discovery: Discovery | None = None
        self._clock = clock
        self.keys = Keys(self._fetch_keys, clock=clock)

    async def discovery(self) -> Discovery:
        if self._discovery is None:
            url = self.issuer + "/.well-known/openid-configuration"
            found = msgspec.convert(await self._get_json(url), Discovery)
            if found.issuer.rstrip("/") != self.issuer:
                raise Unavailable(f"the provider at {url} names issuer {found.issuer!r}")
            self._discovery = found
        return self._discovery

    async def _fetch_keys(self) -> dict[str, Any]:
        return await self._get_json((await self.discovery()).jwks_uri)

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self._http.get(url) as resp:
                resp.raise_for_status()
                body: dict[str, Any] = await resp.json(content_type=None)
                return body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"the OpenID provider did not answer {url}: {exc}") from None

    async def authorize_url(self, redirect_uri: str, state: str, nonce: str,
                            challenge: str) -> str:  # fmt: skip
        query = {"response_type": "code", "client_id": self.client_id, "scope": SCOPES,
                 "redirect_uri": redirect_uri, "state": state, "nonce": nonce,
                 "code_challenge": challenge, "code_challenge_method": "S256"}  # fmt: skip
        return (await self.discovery()).authorization_endpoint + "?" + urlencode(query)

    async def exchange(self, code: str, verifier: str, redirect_uri: str) -> Tokens:
        """The tokens the provider gives for this code."""
        form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
                "redirect_uri": redirect_uri}  # fmt: skip
        tokens = await self._token(form)
        assert tokens is not None  # only a device poll may be pending
        return tokens

    def _auth(self) -> dict[str, str]:
        # client_secret_basic: each part form-encoded before base64 (RFC 6749, 2.3.1)
        pair = f"{quote(self.client_id, safe='')}:{quote(self._secret, safe='')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}

    async def _token(self, form: dict[str, str], *, pending_ok: bool = False) -> Tokens | None:
        url = (await self.discovery()).token_endpoint
        try:
            async with self._http.post(url, data=form, headers=self._auth()) as resp:
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(
                f"the OpenID provider's token endpoint did not answer: {exc}"
            ) from None
        if pending_ok and body.get("error") in ("authorization_pending", "slow_down"):
            return None
        if resp.status != 200 or not isinstance(body.get("id_token"), str):
            raise rejected(
                "claims", f"the provider gave no ID token: {body.get('error', resp.status)}"
            )
        access = body.get("access_token")
        return Tokens(str(body["id_token"]), access if isinstance(access, str) else None)

    async def device_start(self) -> dict[str, Any]:
        """The provider's device authorization: device and user codes, where to enter them."""
        url = (await self.discovery()).device_authorization_endpoint
        if url is None:
            raise Unavailable("the OpenID provider has no device authorization endpoint")
        try:
            async with self._http.post(url, data={"scope": SCOPES}, headers=self._auth()) as resp:
                body: dict[str, Any] = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"the OpenID provider's device endpoint: {exc}") from None
        if resp.status != 200 or "device_code" not in body:
            raise Unavailable(f"the OpenID provider refused the device flow: {body}")
        return body

    async def device_poll(self, device_code: str) -> Tokens | None:
        """The tokens once the user approved; None while they have not yet."""
        form = {"grant_type": DEVICE_GRANT, "device_code": device_code}
        return await self._token(form, pending_ok=True)

    async def validate(self, raw: str, nonce: str | None) -> dict[str, Any]:
        return await validate_id_token(raw, self.keys, issuer=self.issuer, nonce=nonce,
                                       client_id=self.client_id,
                                       now=self._clock.now())  # fmt: skip

    async def claims(self, tokens: Tokens, nonce: str | None) -> dict[str, Any]:
        """The ID token's validated claims, and those it lacks from UserInfo."""
        claims = await self.validate(tokens.id_token, nonce)
        url = (await self.discovery()).userinfo_endpoint
        if url is None or tokens.access_token is None or claims.keys() >= set(USERINFO_CLAIMS):
            return claims
        return with_userinfo(claims, await self._userinfo(url, tokens.access_token))

    async def _userinfo(self, url: str, access_token: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        try:
            async with self._http.get(url, headers=headers) as resp:
                body = await resp.json(content_type=None) if resp.status == 200 else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"the OpenID provider did not answer {url}: {exc}") from None
        except ValueError:  # not JSON (a signed or encrypted answer, which we never ask for)
            body = None
        if not isinstance(body, dict):
            raise rejected("userinfo", f"the provider's UserInfo answered HTTP {resp.status} "
                                       "without a JSON object")  # fmt: skip
        return body
