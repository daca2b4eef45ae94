"""E2B sandboxes in Redis (``store.e2b``; services/gateway/e2b, docs/e2b.md).

A sandbox is an instance with its machine, and its id the machine's: what E2B's API says of it
beyond what fleetd keeps of every machine is one record here (its template, metadata, when it
started and ends, what its end does). When it ends is also a score in ``K_E2B_ENDS``: whoever
removes it from there (``take_due``) carries its end out, once, whichever gateway replica that is.

Its access tokens (``envdAccessToken``: what every in-sandbox request carries) are found by
their digests, each naming the sandbox it reaches and the fleetd token or session whose rights
the request runs with (the caller that made the sandbox, or connected to it), and holding the
token sealed: a signed download URL is checked against it.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, cast

import msgspec

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from controlplane.store.keys import Keys


class E2bSandbox(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    instance_id: str
    template_id: str
    alias: str | None = None
    metadata: dict[str, str] = {}
    #: The fleetd token (or session) that made it: E2B's ``clientID``.
    made_by: str
    started_at: float
    #: When its timeout runs out (epoch s).
    end_at: float
    #: What its timeout's end does: ``kill`` (archive the machine) or ``pause``.
    on_timeout: str = "kill"
    auto_resume: bool = False
    #: Its ports reached through their host names without a traffic token.
    public_traffic: bool = True


class TokenHolder(msgspec.Struct, kw_only=True, frozen=True):
    """Whom an access token reaches and with whose rights."""

    sandbox_id: str
    caller_id: str
    #: The token, sealed by the platform's secret key: a signed URL is checked against it.
    sealed: str
    #: A traffic token (``trafficAccessToken``): it opens the sandbox's ports, shared with
    #: browsers as E2B's is, and nothing else: no envd call, no signed URL.
    traffic: bool = False


_SANDBOX = msgspec.json.Decoder(E2bSandbox)
_HOLDER = msgspec.json.Decoder(TokenHolder)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class E2bRecords:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis: Any = redis
        self._k = keys

    async def put(self, sandbox: E2bSandbox) -> None:
        """Record ``sandbox`` (a new one, or its changes: its end, its metadata)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._k.k_e2b_sandbox(sandbox.id), msgspec.json.encode(sandbox))
            pipe.zadd(self._k.K_E2B_ENDS, {sandbox.id: int(sandbox.end_at * 1000)})
            await pipe.execute()

    async def get(self, sandbox_id: str) -> E2bSandbox | None:
        raw = await self._redis.get(self._k.k_e2b_sandbox(sandbox_id))
        return _SANDBOX.decode(raw) if raw else None

    async def many(self, ids: list[str]) -> list[E2bSandbox]:
        if not ids:
            return []
        raws = await self._redis.mget([self._k.k_e2b_sandbox(i) for i in ids])
        return [_SANDBOX.decode(r) for r in raws if r]

    async def ids(self) -> list[str]:
        """Every sandbox's id, by when it ends (the records of killed ones are gone)."""
        return cast(list[str], await self._redis.zrange(self._k.K_E2B_ENDS, 0, -1))

    async def forget(self, sandbox_id: str) -> None:
        """The sandbox's record and every access token to it gone."""
        tokens = self._k.k_e2b_tokens_of(sandbox_id)
        digests = cast(set[str], await self._redis.smembers(tokens))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._k.k_e2b_sandbox(sandbox_id), tokens,
                        *(self._k.k_e2b_token(d) for d in digests))  # fmt: skip
            pipe.zrem(self._k.K_E2B_ENDS, sandbox_id)
            await pipe.execute()

    async def due(self, now_s: float, limit: int = 100) -> list[str]:
        """Sandboxes whose timeout ran out by ``now_s``."""
        got = await self._redis.zrangebyscore(self._k.K_E2B_ENDS, "-inf", int(now_s * 1000),
                                              start=0, num=limit)  # fmt: skip
        return cast(list[str], got)

    async def take_due(self, sandbox_id: str, end_ms: int) -> bool:
        """Whether this caller is the one to carry out the end at ``end_ms`` (the sandbox's end
        is still that one, and no other replica took it)."""
        script = """
        if redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2] then
          redis.call('ZADD', KEYS[1], 'XX', '+inf', ARGV[1]) return 1 end
        return 0"""
        taken = await self._redis.eval(script, 1, self._k.K_E2B_ENDS, sandbox_id, str(end_ms))
        return bool(int(taken))

    async def look_again(self, sandbox_id: str, at_s: float) -> None:
        """A pause carried out at its end looked at again at ``at_s`` (it may be refused, and
        the machine run on), unless the sandbox has another end by then (a ``connect``)."""
        script = """
        if redis.call('ZSCORE', KEYS[1], ARGV[1]) == 'inf' then
          redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[1]) end"""
        await self._redis.eval(script, 1, self._k.K_E2B_ENDS, sandbox_id, str(int(at_s * 1000)))

    async def end_of(self, sandbox_id: str) -> int | None:
        """The end (epoch ms) on record; None: none (killed, or its end carried out)."""
        score = await self._redis.zscore(self._k.K_E2B_ENDS, sandbox_id)
        return None if score is None or score == float("inf") else int(score)

    async def add_token(self, token: str, holder: TokenHolder) -> None:
        d = digest(token)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._k.k_e2b_token(d), msgspec.json.encode(holder))
            pipe.sadd(self._k.k_e2b_tokens_of(holder.sandbox_id), d)
            await pipe.execute()

    async def holder(self, token: str) -> TokenHolder | None:
        raw = await self._redis.get(self._k.k_e2b_token(digest(token)))
        return _HOLDER.decode(raw) if raw else None

    async def holders(self, sandbox_id: str) -> list[TokenHolder]:
        """Every access token of the sandbox (a signed URL names none: each is tried)."""
        digests = sorted(cast(set[str], await self._redis.smembers(
            self._k.k_e2b_tokens_of(sandbox_id))))  # fmt: skip
        if not digests:
            return []
        raws = await self._redis.mget([self._k.k_e2b_token(d) for d in digests])
        return [_HOLDER.decode(r) for r in raws if r]
