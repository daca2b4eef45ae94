"""State in Redis: instances, machines, env vars, repos.

Machines are hashes whose keys are the wire (camelCase) field names, so a hash converts straight
into ``contracts.models.Machine``. Status changes go through one Lua script that compares and
sets, so concurrent or repeated events can never move a machine backwards.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, cast

import msgspec
import redis.asyncio as aioredis
import structlog

from contracts import ids
from contracts.errors import NotFound
from contracts.machine_files import CronJob
from contracts.models import EnvScope, EnvVar, Instance, Machine, Repo
from contracts.status import ADVANCE_FROM, MachineStatus

log = structlog.get_logger(__name__)

P = "fleet:"
#: Redis connections per process; more concurrent commands queue for one.
MAX_CONNECTIONS = 64
K_INSTANCES = P + "instances"
K_MACHINES = P + "machines"
K_PLATFORM_ENV = P + "env:platform"

# KEYS[1] machine hash. ARGV: target status, reason, updatedAt, allowed-from (comma separated),
# then field/value pairs to set in the same step. Returns {changed (0/1), previous status}.
_TRANSITION = """
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return {0, ''} end
if cur == ARGV[1] then return {1, cur} end  -- a repeat: keep the first reason and fields
for allowed in string.gmatch(ARGV[4], '[^,]+') do
  if allowed == cur then
    redis.call('HSET', KEYS[1], 'status', ARGV[1], 'statusReason', ARGV[2], 'updatedAt', ARGV[3])
    for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
    return {1, cur}
  end
end
return {0, cur}
"""


_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _now() -> str:
    return datetime.now(UTC).isoformat()


def k_instance(instance_id: str) -> str:
    return f"{P}instance:{instance_id}"


def k_instance_env(instance_id: str) -> str:
    return f"{P}env:instance:{instance_id}"


def k_repos(instance_id: str) -> str:
    return f"{P}repos:{instance_id}"


def k_repo_secrets(instance_id: str) -> str:
    return f"{P}repo-secrets:{instance_id}"


def k_cron(instance_id: str) -> str:
    return f"{P}instance:{instance_id}:cron"


def k_machine(machine_id: str) -> str:
    return f"{P}machine:{machine_id}"


def k_instance_machines(instance_id: str) -> str:
    return f"{P}instance:{instance_id}:machines"


def k_cloned(machine_id: str) -> str:
    return f"{P}machine:{machine_id}:cloned"


class Transition(msgspec.Struct, frozen=True):
    #: The status now is the target (it was allowed; it may already have been the target).
    changed: bool
    previous: MachineStatus | None
    target: MachineStatus

    @property
    def moved(self) -> bool:
        """The status really changed (not a repeat of a transition already made)."""
        return self.changed and self.previous is not self.target


class Store:
    def __init__(self, redis_url: str) -> None:
        self._url = redis_url
        self._r: aioredis.Redis | None = None
        self._transition: Any = None
        self._unlock: Any = None

    @property
    def redis(self) -> aioredis.Redis:
        assert self._r is not None, "Store used outside its context"
        return self._r

    async def __aenter__(self) -> Store:
        # A blocking pool: a burst of concurrent commands (a refreshEnv across 1,000 machines)
        # waits for a free connection instead of failing with "Too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(
            self._url,
            max_connections=MAX_CONNECTIONS,
            timeout=30,
            decode_responses=True,
            health_check_interval=10,
            retry_on_timeout=True,
            socket_keepalive=True,
        )
        self._r = aioredis.Redis.from_pool(pool)  # owns the pool: aclose() closes it
        await self._r.ping()
        self._transition = self._r.register_script(_TRANSITION)
        self._unlock = self._r.register_script(_UNLOCK)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        r, self._r = self._r, None
        if r is not None:
            await r.aclose()

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    # --- instances --------------------------------------------------------------------------
    async def create_instance(self, name: str) -> Instance:
        inst = Instance(id=ids.new_instance_id(), name=name, created_at=datetime.now(UTC))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(k_instance(inst.id), mapping=_to_hash(inst))
            pipe.zadd(K_INSTANCES, {inst.id: inst.created_at.timestamp()})
            await pipe.execute()
        return inst

    async def get_instance(self, instance_id: str) -> Instance:
        h = await self.redis.hgetall(k_instance(instance_id))
        if not h:
            raise NotFound(f"instance {instance_id} not found")
        return msgspec.convert(h, Instance, strict=False)

    async def list_instances(self) -> list[Instance]:
        ids_ = cast(list[str], await self.redis.zrange(K_INSTANCES, 0, -1))
        return [await self.get_instance(i) for i in ids_]

    # --- env vars ---------------------------------------------------------------------------
    def _env_key(self, instance_id: str | None) -> str:
        return K_PLATFORM_ENV if instance_id is None else k_instance_env(instance_id)

    async def set_env(self, instance_id: str | None, name: str, value: str) -> None:
        await self.redis.hset(self._env_key(instance_id), name, value)

    async def unset_env(self, instance_id: str | None, name: str) -> bool:
        return bool(await self.redis.hdel(self._env_key(instance_id), name))

    async def list_env(self, instance_id: str | None) -> list[EnvVar]:
        scope: EnvScope = "platform" if instance_id is None else "instance"
        h = cast(dict[str, str], await self.redis.hgetall(self._env_key(instance_id)))
        return [EnvVar(name=n, value=v, scope=scope) for n, v in sorted(h.items())]

    async def env_maps(self, instance_id: str) -> tuple[dict[str, str], dict[str, str]]:
        """(platform vars, instance vars), read in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(K_PLATFORM_ENV)
            pipe.hgetall(k_instance_env(instance_id))
            platform, instance = await pipe.execute()
        return platform, instance

    # --- repos ------------------------------------------------------------------------------
    async def add_repo(self, instance_id: str, repo: Repo) -> None:
        await self.redis.hset(k_repos(instance_id), repo.path, msgspec.json.encode(repo).decode())

    async def remove_repo(self, instance_id: str, path: str) -> bool:
        await self.redis.hdel(k_repo_secrets(instance_id), path)
        return bool(await self.redis.hdel(k_repos(instance_id), path))

    async def set_repo_secret(self, instance_id: str, path: str, sealed: str | None) -> None:
        """A repo's encrypted credentials (None: none)."""
        if sealed is None:
            await self.redis.hdel(k_repo_secrets(instance_id), path)
        else:
            await self.redis.hset(k_repo_secrets(instance_id), path, sealed)

    async def repo_secret(self, instance_id: str, path: str) -> str | None:
        return cast(str | None, await self.redis.hget(k_repo_secrets(instance_id), path))

    async def list_repos(self, instance_id: str) -> list[Repo]:
        h = await self.redis.hgetall(k_repos(instance_id))
        return [msgspec.json.decode(h[p], type=Repo) for p in sorted(h)]

    # --- cron --------------------------------------------------------------------------------
    async def set_cron(self, instance_id: str, jobs: list[CronJob]) -> None:
        await self.redis.set(k_cron(instance_id), msgspec.json.encode(jobs))

    async def get_cron(self, instance_id: str) -> list[CronJob]:
        raw = await self.redis.get(k_cron(instance_id))
        return msgspec.json.decode(raw, type=list[CronJob]) if raw else []

    @contextlib.asynccontextmanager
    async def lock(self, name: str, ttl_s: float = 60.0) -> AsyncIterator[bool]:
        """A best-effort exclusive lock across processes (SET NX PX); yields whether we hold
        it. The TTL frees it if the holder dies; release only deletes our own token."""
        key, token = f"{P}lock:{name}", secrets.token_hex(8)
        held = bool(await self.redis.set(key, token, nx=True, px=int(ttl_s * 1000)))
        try:
            yield held
        finally:
            if held:
                await self._unlock(keys=[key], args=[token])

    async def mark_cloned(self, machine_id: str, path: str) -> None:
        await self.redis.sadd(k_cloned(machine_id), path)

    async def cloned_paths(self, machine_id: str) -> set[str]:
        return cast(set[str], await self.redis.smembers(k_cloned(machine_id)))

    # --- machines ---------------------------------------------------------------------------
    async def create_machine(self, instance_id: str, provider: str) -> Machine:
        now = datetime.now(UTC)
        m = Machine(
            id=ids.new_machine_id(),
            instance_id=instance_id,
            provider=provider,  # type: ignore[arg-type]
            status=MachineStatus.CREATED,
            status_reason="waiting for the provisioner",
            created_at=now,
            updated_at=now,
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(k_machine(m.id), mapping=_to_hash(m))
            pipe.zadd(K_MACHINES, {m.id: now.timestamp()})
            pipe.zadd(k_instance_machines(instance_id), {m.id: now.timestamp()})
            pipe.hset(k_instance(instance_id), "currentMachineId", m.id)
            await pipe.execute()
        return m

    async def get_machine(self, machine_id: str) -> Machine:
        h = await self.redis.hgetall(k_machine(machine_id))
        if not h:
            raise NotFound(f"machine {machine_id} not found")
        return msgspec.convert(h, Machine, strict=False)

    async def list_machines(self, instance_id: str | None = None) -> list[Machine]:
        key = K_MACHINES if instance_id is None else k_instance_machines(instance_id)
        ids_ = cast(list[str], await self.redis.zrevrange(key, 0, -1))
        async with self.redis.pipeline(transaction=False) as pipe:
            for mid in ids_:
                pipe.hgetall(k_machine(mid))
            rows = await pipe.execute()
        return [msgspec.convert(h, Machine, strict=False) for h in rows if h]

    async def transition(
        self, machine_id: str, target: MachineStatus, reason: str, **fields: str
    ) -> Transition:
        """Move to ``target`` if the current status allows it (``contracts.status``)."""
        allowed = ",".join(s.value for s in ADVANCE_FROM[target]) or "-"
        extra: list[str] = []
        for name, value in fields.items():
            extra += [name, value]
        changed, prev = await self._transition(
            keys=[k_machine(machine_id)], args=[target.value, reason, _now(), allowed, *extra]
        )
        result = Transition(
            changed=bool(changed), previous=MachineStatus(prev) if prev else None, target=target
        )
        if result.moved:
            log.info(
                "machine.status_changed",
                machine_id=machine_id,
                status=target.value,
                previous=prev,
                reason=reason,
            )
        return result

    async def set_fields(self, machine_id: str, **fields: str) -> None:
        mapping: dict[Any, Any] = {**fields, "updatedAt": _now()}
        await self.redis.hset(k_machine(machine_id), mapping=mapping)

    async def machine_secret(self, machine_id: str) -> str | None:
        return cast(str | None, await self.redis.hget(k_machine(machine_id), "tokenEnc"))

    async def machine_secrets(self, machine_ids: list[str]) -> dict[str, str | None]:
        """Many machines' sealed tokens in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for mid in machine_ids:
                pipe.hget(k_machine(mid), "tokenEnc")
            sealed = await pipe.execute()
        return dict(zip(machine_ids, sealed, strict=True))


def _to_hash(struct: msgspec.Struct) -> dict[Any, Any]:
    """A struct as a Redis hash: wire names, None left out, values as strings."""
    raw = msgspec.to_builtins(struct)
    return {k: v if isinstance(v, str) else str(v) for k, v in raw.items() if v is not None}
