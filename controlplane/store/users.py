"""Users, their roles on instances, and browser sessions in Redis (``store.users``).

The policy (who may set what, which roles exist) is in the gateway; this is only where and how
the records are kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, cast

import msgspec

from contracts.gateway.people import User
from controlplane.store.scripts import BoundScript

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from controlplane.security.caller_changes import CallerChanges
    from controlplane.store.keys import Keys

_ENCODE = msgspec.json.Encoder()
#: A caller's records in one round trip: a token (by its secret's digest) or a session (by its
#: key), the user it names (its ``userId`` field), and that user's instance roles. KEYS[1]: the
#: tokens-by-digest index, or the record's own key (a session's, a token's); ARGV: 'token' (by
#: digest) or anything else (the record at KEYS[1]), the digest, and the key templates (``%s``:
#: an id) of a token, a user and a user's roles.
_LOOKUP = BoundScript("""
local record
if ARGV[1] == 'token' then
  local id = redis.call('HGET', KEYS[1], ARGV[2])
  if not id then return false end
  record = redis.call('HGETALL', string.format(ARGV[3], id))
else
  record = redis.call('HGETALL', KEYS[1])
end
if #record == 0 then return false end
local uid
for i = 1, #record, 2 do
  if record[i] == 'userId' then uid = record[i + 1] end
end
if not uid then return {record, false, {}} end
local user = redis.call('GET', string.format(ARGV[4], uid))
return {record, user, redis.call('HGETALL', string.format(ARGV[5], uid))}
""")


class Found(NamedTuple):
    """A caller's records: its token's or session's hash, its user (None: none, or gone), and
    the user's roles (instance id -> role)."""

    record: dict[str, str]
    user: User | None
    roles: dict[str, str]


#: Bind a user to their first OpenID subject, once: only while the user has none and the
#: subject names no user (two first sign-ins at once bind one). KEYS[1]: the user, KEYS[2]: the
#: subjects index; ARGV: the subject, the user's id. Returns 1 when bound.
_BIND = BoundScript("""
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local user = cjson.decode(raw)
if user.subject ~= nil and user.subject ~= cjson.null then return 0 end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
user.subject = ARGV[1]
redis.call('SET', KEYS[1], cjson.encode(user))
return 1
""")


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class SessionRecord(msgspec.Struct, frozen=True, rename="camel"):
    """A session's hash."""

    user_id: str
    #: The CSRF token every cookie-authenticated state change must echo.
    csrf: str


class UserRecords:
    def __init__(self, redis: aioredis.Redis, keys: Keys, caller_changes: CallerChanges) -> None:
        self._redis = redis
        self._caller_changes = caller_changes
        self._k = keys

    async def add(self, user: User) -> bool:
        """Record a new user; False when the email (or subject) already has one."""
        r = self._redis
        if not await r.hsetnx(self._k.K_USER_EMAILS, user.email.lower(), user.id):
            return False
        async with r.pipeline(transaction=True) as pipe:
            pipe.set(self._k.k_user(user.id), _ENCODE.encode(user))
            pipe.zadd(self._k.K_USERS, {user.id: user.created_at.timestamp()})
            if user.subject is not None:
                pipe.hset(self._k.K_USER_SUBJECTS, user.subject, user.id)
            await pipe.execute()
        return True

    async def bind_subject(self, user_id: str, subject: str) -> bool:
        """Make ``subject`` the user's, if they have none yet (a user is never rebound)."""
        script = _BIND.on(self._redis)
        bound = bool(
            await script(
                keys=[self._k.k_user(user_id), self._k.K_USER_SUBJECTS], args=[subject, user_id]
            )
        )
        if bound:
            await self._caller_changes.written()
        return bound

    async def put(self, user: User) -> None:
        await self._redis.set(self._k.k_user(user.id), _ENCODE.encode(user))
        await self._caller_changes.written()

    async def get(self, user_id: str) -> User | None:
        raw = await self._redis.get(self._k.k_user(user_id))
        return None if raw is None else msgspec.json.decode(raw, type=User)

    async def id_by_email(self, email: str) -> str | None:
        return cast(str | None, await self._redis.hget(self._k.K_USER_EMAILS, email.lower()))

    async def id_by_subject(self, subject: str) -> str | None:
        return cast(str | None, await self._redis.hget(self._k.K_USER_SUBJECTS, subject))

    async def ids(self) -> list[str]:
        return cast(list[str], await self._redis.zrange(self._k.K_USERS, 0, -1))

    async def roles(self, user_id: str) -> dict[str, str]:
        """Instance id -> the user's role on it."""
        return cast(dict[str, str], await self._redis.hgetall(self._k.k_user_roles(user_id)))

    async def members(self, instance_id: str) -> dict[str, str]:
        """User id -> their role on the instance."""
        key = self._k.k_instance_members(instance_id)
        return cast(dict[str, str], await self._redis.hgetall(key))

    async def set_member(self, instance_id: str, user_id: str, role: str | None) -> None:
        """Give the user ``role`` on the instance (None: none)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            if role is None:
                pipe.hdel(self._k.k_user_roles(user_id), instance_id)
                pipe.hdel(self._k.k_instance_members(instance_id), user_id)
            else:
                pipe.hset(self._k.k_user_roles(user_id), instance_id, role)
                pipe.hset(self._k.k_instance_members(instance_id), user_id, role)
            await pipe.execute()
        await self._caller_changes.written()

    async def by_token_digest(self, digest: str) -> Found | None:
        return await self._lookup("token", self._k.K_TOKEN_HASHES, digest)

    async def by_token_id(self, token_id: str) -> Found | None:
        """A token's record (revoked or not) with its user and roles, by the token's id."""
        return await self._lookup("record", self._k.k_token(token_id), "")

    async def by_session(self, session_id: str) -> Found | None:
        return await self._lookup("session", self._k.k_session(session_id), "")

    async def _lookup(self, mode: str, key: str, digest: str) -> Found | None:
        script = _LOOKUP.on(self._redis)
        templates = [self._k.k_token("%s"), self._k.k_user("%s"), self._k.k_user_roles("%s")]
        got = await script(keys=[key], args=[mode, digest, *templates])
        if not got:
            return None
        record, user, roles = got
        decoded = msgspec.json.decode(user, type=User) if user else None
        return Found(_pairs(record), decoded, _pairs(roles))

    # --- sign-ins under way ----------------------------------------------------------------
    async def put_signin(self, state_digest: str, record: bytes, ttl_s: float) -> None:
        await self._redis.set(self._k.k_signin(state_digest), record, px=int(ttl_s * 1000))

    async def signin_exists(self, state_digest: str) -> bool:
        return bool(await self._redis.exists(self._k.k_signin(state_digest)))

    async def take_signin(self, state_digest: str) -> bytes | None:
        """The sign-in's record, once: the key is gone after."""
        raw = await self._redis.getdel(self._k.k_signin(state_digest))
        return None if raw is None else raw.encode() if isinstance(raw, str) else bytes(raw)

    # --- sessions ---------------------------------------------------------------------------
    async def add_session(self, session_id: str, record: SessionRecord, ttl_s: float) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._k.k_session(session_id), mapping={"userId": record.user_id,
                                                      "csrf": record.csrf})  # fmt: skip
            pipe.pexpire(self._k.k_session(session_id), int(ttl_s * 1000))
            pipe.sadd(self._k.k_user_sessions(record.user_id), session_id)
            await pipe.execute()

    async def session(self, session_id: str) -> SessionRecord | None:
        raw = cast(dict[str, str], await self._redis.hgetall(self._k.k_session(session_id)))
        return session_record(raw) if raw else None

    async def end_session(self, session_id: str, user_id: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._k.k_session(session_id))
            pipe.srem(self._k.k_user_sessions(user_id), session_id)
            await pipe.execute()
        await self._caller_changes.written()

    async def end_sessions(self, user_id: str) -> None:
        """End every session of the user (disabled)."""
        r = self._redis
        ids_ = cast(set[str], await r.smembers(self._k.k_user_sessions(user_id)))
        async with r.pipeline(transaction=True) as pipe:
            for session_id in ids_:
                pipe.delete(self._k.k_session(session_id))
            pipe.delete(self._k.k_user_sessions(user_id))
            await pipe.execute()
        await self._caller_changes.written()


def session_record(raw: dict[str, str]) -> SessionRecord:
    return msgspec.convert(raw, SessionRecord)
