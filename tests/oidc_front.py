"""A front between the gateway and the real OpenID provider, for the ID-token attacks.

The provider (tests/oidc/provider.mjs) runs with the front's URL as its issuer, and the front
forwards every request to it untouched: discovery, the authorization and login pages, the code
exchange. Two answers it may change. The provider's keys (``/jwks``) get one more key, the
front's own, as a provider that rotated keys publishes its next one. And when the test sets
``forge``, the ID token of the code exchange (the real one, for the real sign-in, with its
real nonce) is replaced by a forgery of it:

- ``other-key``: signed by a key the provider never published, under the provider's key id;
- ``none``: ``alg: none``, unsigned;
- ``audience``, ``expired``, ``nonce``: signed by the published front key, with another
  client's ``aud``, an ``exp`` and ``iat`` long past, or another sign-in's nonce;
- ``userinfo-sub``: the ID token untouched, but the provider's UserInfo answer names another
  subject (its ``email`` that subject's).

The front keeps each ID token the provider gave (``id_tokens``) and each UserInfo answer
(``userinfos``), as it gave them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.httpserve import start_site
from tests.oidc_provider import SCRIPT

FRONT_KID = "front-rotated"
#: The provider's UserInfo endpoint (node-oidc-provider's default path).
USERINFO_PATH = "/me"
#: Headers not forwarded either way (hop-by-hop, or recomputed by aiohttp).
_SKIP = {"content-length", "transfer-encoding", "content-encoding", "connection",
         "keep-alive", "accept-encoding"}  # fmt: skip


class Front:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.forge: str | None = None
        self.id_tokens: list[str] = []
        self.userinfos: list[dict[str, Any]] = []
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _SKIP}
        async with aiohttp.ClientSession(auto_decompress=True) as s, s.request(
            request.method, self.upstream + request.path_qs, headers=headers,
            data=await request.read(), allow_redirects=False,
        ) as r:  # fmt: skip
            body = await r.read()
            out = web.Response(status=r.status, body=self._changed(request.path, body))
            for name, value in r.headers.items():
                if name.lower() not in _SKIP:
                    out.headers.add(name, value)
        return out

    def _changed(self, path: str, body: bytes) -> bytes:
        if path == "/jwks":
            keys = json.loads(body)
            public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
            keys["keys"].append(public | {"kid": FRONT_KID, "use": "sig", "alg": "RS256"})
            return json.dumps(keys).encode()
        if path == "/token":
            answer = json.loads(body)
            if "id_token" in answer:
                self.id_tokens.append(answer["id_token"])
                if self.forge is not None and self.forge != "userinfo-sub":
                    answer["id_token"] = self._forged(answer["id_token"])
            return json.dumps(answer).encode()
        if path == USERINFO_PATH:
            self.userinfos.append(json.loads(body))
        if path == USERINFO_PATH and self.forge == "userinfo-sub":
            return json.dumps(
                json.loads(body) | {"sub": "mallory", "email": "mallory@example.com"}
            ).encode()
        return body

    def _forged(self, real: str) -> str:
        claims: dict[str, Any] = jwt.decode(real, options={"verify_signature": False})
        kid = jwt.get_unverified_header(real).get("kid")
        if self.forge == "other-key":
            return jwt.encode(claims, self._stranger, "RS256", headers={"kid": kid})
        if self.forge == "none":
            return jwt.encode(claims, None, algorithm="none")
        if self.forge == "audience":
            claims["aud"] = "another-client"
        elif self.forge == "expired":
            claims["iat"], claims["exp"] = int(time.time()) - 7200, int(time.time()) - 3600
        elif self.forge == "nonce":
            claims["nonce"] = "another-sign-ins-nonce"
        return jwt.encode(claims, self._key, "RS256", headers={"kid": FRONT_KID})


@asynccontextmanager
async def fronted_provider() -> AsyncIterator[tuple[str, Front]]:
    """The real provider behind a front: the issuer's URL (the front's) and the front. The
    front listens first (its URL is the provider's issuer); each reports the port it bound."""
    front = Front("")  # its upstream: the provider's URL, once it said it
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", front.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        issuer = f"http://127.0.0.1:{await start_site(runner)}"
        proc = await asyncio.create_subprocess_exec(
            "node", str(SCRIPT), issuer, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            assert line.startswith("ready "), f"the OpenID provider did not start: {line!r}"
            front.upstream = line.split()[2]
            yield issuer, front
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 10)
    finally:
        await runner.cleanup()
