"""State in Redis: instances, machines, env vars, repos, access tokens, liveness.

``Store`` owns the connection, and nothing outside this package touches Redis: keys and hash
fields are spelled in ``keys.py`` (``store.keys``), and each other concern is one record object
that ``Store`` makes with the connection and the keys and holds (``store.tokens``,
``store.stops``, ``store.snapshots``, ...: a module of this package each). Machines are hashes
whose keys are the wire (camelCase) field names, so a hash converts straight into
``contracts.models.Machine``.
Status changes go through one Lua script, generated from ``contracts.status``, that compares and
sets, so concurrent or repeated events can never move a machine backwards.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import TracebackType
from typing import Any, cast

import msgspec
import redis.asyncio as aioredis
import structlog

from contracts import ids
from contracts.daemon.machine_files import CronJob
from contracts.errors import NotFound
from contracts.models import EnvScope, EnvVar, Instance, Machine, Repo, RuntimeChoice
from contracts.status import MachineStatus
from controlplane.redis_client import close_client, redis_client
from controlplane.security.caller_changes import CallerChanges
from controlplane.settings import DEFAULT_PREFIX, Settings
from controlplane.store import scripts as store_scripts
from controlplane.store.boot_watch import BootWatchRecords
from controlplane.store.codemode import CodemodeRecords
from controlplane.store.creates import CreateOnce, CreateRecords, Once
from controlplane.store.disk import DiskLedger
from controlplane.store.e2b import E2bRecords
from controlplane.store.environments import EnvironmentRecords
from controlplane.store.hosts import HostRecords
from controlplane.store.instance_settings import InstanceSettingsRecords
from controlplane.store.keys import (
    F_CREDENTIAL_REVOKED,
    F_CURRENT_MACHINE,
    F_DAEMON_GIT_SHA,
    F_DAEMON_VERSION,
    F_EXTERNAL_ID,
    F_PAUSED_BYTES,
    F_SEALED_CREDENTIAL,
    F_STATUS,
    F_UPDATED_AT,
    F_WOKEN_BY,
    Keys,
)
from controlplane.store.lifecycles import LifecycleRecords
from controlplane.store.liveness import HeartbeatRecords
from controlplane.store.locks import LockRecords
from controlplane.store.metrics import MetricsRecords
from controlplane.store.repo_warnings import RepoWarnings
from controlplane.store.secrets import SecretRecords
from controlplane.store.snapshots import SnapshotRecords
from controlplane.store.stages import StageRecords, Transition
from controlplane.store.stop import StopRecords
from controlplane.store.tickets import TicketRecords
from controlplane.store.tokens import TokenRecords
from controlplane.store.users import UserRecords
from controlplane.store.webhooks import WebhookRecords

__all__ = ["MachineAccess", "Store", "Transition"]

log = structlog.get_logger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class MachineAccess(msgspec.Struct, frozen=True):
    """What the auth callout needs to admit a machine, read in one step."""

    #: The encrypted token (None: none minted, or no such machine).
    sealed_token: str | None
    status: MachineStatus | None
    revoked: bool


class Store:
    def __init__(
        self, redis_url: str, *, sentinels: str = "", master: str = "fleetd",
        key_prefix: str = DEFAULT_PREFIX, client: aioredis.Redis | None = None,
    ) -> None:  # fmt: skip
        """The store on Redis at ``redis_url`` (with ``sentinels``, ``host:port,...`` of Redis
        Sentinels: the primary is the one they name, ``redis_url`` then gives only the password
        and database), or on ``client``, one its caller owns."""
        #: The connection, for the store's records (and tests that inspect Redis) only: its pool
        #: connects on first use; entering the store checks it answers, leaving it closes it.
        self.redis = (
            client if client is not None
            else redis_client(redis_url, sentinels=sentinels, master=master)
        )  # fmt: skip
        #: Every key this store reads or writes (``FLEET_KEY_PREFIX``): nothing outside them.
        self.keys = Keys(key_prefix)
        self._transition = self.redis.register_script(store_scripts.TRANSITION)
        self._count_by_status = self.redis.register_script(store_scripts.COUNT_BY_STATUS)
        #: Told after each write through this Store that can change what a caller may do (a
        #: user's role or state, their instance roles, a session ended, a token revoked).
        self.caller_changes = CallerChanges()
        self.tokens = TokenRecords(self.redis, self.keys, self.caller_changes)
        self.users = UserRecords(self.redis, self.keys, self.caller_changes)
        self.heartbeats = HeartbeatRecords(self.redis, self.keys)
        self.boot_watch = BootWatchRecords(self.redis, self.keys)
        self.tickets = TicketRecords(self.redis, self.keys)
        self.stages = StageRecords(self.redis, self.keys)
        self.creates = CreateRecords(self.redis, self.keys)
        self.hosts = HostRecords(self.redis, self.keys)
        self.instance_settings = InstanceSettingsRecords(self.redis, self.keys)
        self.stops = StopRecords(self.redis, self.keys)
        self.snapshots = SnapshotRecords(self.redis, self.keys)
        self.disk = DiskLedger(self.redis, self.keys)
        self.repo_warnings = RepoWarnings(self.redis, self.keys)
        self.environments = EnvironmentRecords(self.redis, self.keys)
        self.lifecycles = LifecycleRecords(self.redis, self.keys)
        self.codemode = CodemodeRecords(self.redis, self.keys)
        self.secrets = SecretRecords(self.redis, self.keys)
        self.locks = LockRecords(self.redis, self.keys)
        self.webhooks = WebhookRecords(self.redis, self.keys)
        self.e2b = E2bRecords(self.redis, self.keys)
        self.metrics = MetricsRecords(self.redis, self.keys)

    async def __aenter__(self) -> Store:
        await self.redis.ping()
        return self

    @classmethod
    def of(cls, settings: Settings) -> Store:
        """The store a service process uses, from its settings (one server, or Sentinel)."""
        return cls(settings.redis_url, sentinels=settings.redis_sentinels,
                   master=settings.redis_sentinel_master,
                   key_prefix=settings.key_prefix)  # fmt: skip

    @classmethod
    def on_client(cls, client: aioredis.Redis, key_prefix: str = DEFAULT_PREFIX) -> Store:
        """A store on a client its caller owns and closes (not entered as a context), such as
        the tests' in-memory Redis; ``client`` must decode responses."""
        return cls("", key_prefix=key_prefix, client=client)

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await close_client(self.redis)

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    # --- instances --------------------------------------------------------------------------
    async def create_instance(self, name: str) -> Instance:
        inst = Instance(id=ids.new_instance_id(), name=name, created_at=datetime.now(UTC))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.k_instance(inst.id), mapping=_to_hash(inst))
            pipe.zadd(self.keys.K_INSTANCES, {inst.id: inst.created_at.timestamp()})
            await pipe.execute()
        return inst

    async def get_instance(self, instance_id: str) -> Instance:
        h = await self.redis.hgetall(self.keys.k_instance(instance_id))
        if not h:
            raise NotFound(f"instance {instance_id} not found")
        return msgspec.convert(h, Instance, strict=False)

    async def list_instances(self) -> list[Instance]:
        ids_ = cast(list[str], await self.redis.zrange(self.keys.K_INSTANCES, 0, -1))
        return [await self.get_instance(i) for i in ids_]

    # --- env vars ---------------------------------------------------------------------------
    def _env_key(self, instance_id: str | None) -> str:
        return (
            self.keys.K_PLATFORM_ENV
            if instance_id is None
            else self.keys.k_instance_env(instance_id)
        )

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
            pipe.hgetall(self.keys.K_PLATFORM_ENV)
            pipe.hgetall(self.keys.k_instance_env(instance_id))
            platform, instance = await pipe.execute()
        return platform, instance

    # --- repos ------------------------------------------------------------------------------
    async def add_repo(self, instance_id: str, repo: Repo) -> None:
        await self.redis.hset(
            self.keys.k_repos(instance_id), repo.path, msgspec.json.encode(repo).decode()
        )

    async def remove_repo(self, instance_id: str, path: str) -> bool:
        await self.redis.hdel(self.keys.k_repo_secrets(instance_id), path)
        return bool(await self.redis.hdel(self.keys.k_repos(instance_id), path))

    async def set_repo_secret(self, instance_id: str, path: str, sealed: str | None) -> None:
        """A repo's encrypted credentials (None: none)."""
        if sealed is None:
            await self.redis.hdel(self.keys.k_repo_secrets(instance_id), path)
        else:
            await self.redis.hset(self.keys.k_repo_secrets(instance_id), path, sealed)

    async def repo_secret(self, instance_id: str, path: str) -> str | None:
        return cast(str | None, await self.redis.hget(self.keys.k_repo_secrets(instance_id), path))

    async def list_repos(self, instance_id: str) -> list[Repo]:
        h = await self.redis.hgetall(self.keys.k_repos(instance_id))
        return [msgspec.json.decode(h[p], type=Repo) for p in sorted(h)]

    # --- cron --------------------------------------------------------------------------------
    async def set_cron(self, instance_id: str, jobs: list[CronJob]) -> None:
        await self.redis.set(self.keys.k_cron(instance_id), msgspec.json.encode(jobs))

    async def get_cron(self, instance_id: str) -> list[CronJob]:
        raw = await self.redis.get(self.keys.k_cron(instance_id))
        return msgspec.json.decode(raw, type=list[CronJob]) if raw else []

    async def set_ssh_keys(self, instance_id: str, keys: list[str]) -> None:
        await self.redis.set(self.keys.k_ssh_keys(instance_id), msgspec.json.encode(keys))

    async def mark_cloned(self, machine_id: str, path: str) -> None:
        await self.redis.sadd(self.keys.k_cloned(machine_id), path)

    async def cloned_paths(self, machine_id: str) -> set[str]:
        return cast(set[str], await self.redis.smembers(self.keys.k_cloned(machine_id)))

    # --- machines ---------------------------------------------------------------------------
    async def create_machine(
        self,
        instance_id: str,
        provider: str,
        *,
        current: bool = True,
        runtime: RuntimeChoice | None = None,
    ) -> Machine:
        """A new machine record; the instance's current machine unless ``current`` is False
        (a fork: one more machine of the instance); ``runtime``: its runtime and platform
        (None: ``namespaces``)."""
        m = _new_machine(instance_id, provider, runtime)
        now = m.created_at
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.k_machine(m.id), mapping=_to_hash(m))
            pipe.zadd(self.keys.K_MACHINES, {m.id: now.timestamp()})
            pipe.zadd(self.keys.k_instance_machines(instance_id), {m.id: now.timestamp()})
            if current:
                pipe.hset(self.keys.k_instance(instance_id), F_CURRENT_MACHINE, m.id)
            await pipe.execute()
        return m

    async def create_machine_once(
        self,
        instance_id: str,
        provider: str,
        once: CreateOnce,
        runtime: RuntimeChoice | None = None,
    ) -> tuple[Machine, Once]:
        """``create_machine`` under an idempotency key: the machine the key names (this call's
        if the key was new, with nothing written otherwise)."""
        m = _new_machine(instance_id, provider, runtime)
        got = await self.creates.create(m, _to_hash(m), once)
        return (m if got.created else await self.get_machine(got.machine_id)), got

    async def get_machine(self, machine_id: str) -> Machine:
        h = await self.redis.hgetall(self.keys.k_machine(machine_id))
        if not h:
            raise NotFound(f"machine {machine_id} not found")
        return msgspec.convert(h, Machine, strict=False)

    async def list_machines(self, instance_id: str | None = None) -> list[Machine]:
        key = (
            self.keys.K_MACHINES
            if instance_id is None
            else self.keys.k_instance_machines(instance_id)
        )
        ids_ = cast(list[str], await self.redis.zrevrange(key, 0, -1))
        async with self.redis.pipeline(transaction=False) as pipe:
            for mid in ids_:
                pipe.hgetall(self.keys.k_machine(mid))
            rows = await pipe.execute()
        return [msgspec.convert(h, Machine, strict=False) for h in rows if h]

    async def transition(
        self,
        machine_id: str,
        target: MachineStatus,
        reason: str,
        *,
        external_id: str | None = None,
        paused_bytes: int | None = None,
        woken_by: str | None = None,
    ) -> Transition:
        """Move to ``target`` if ``contracts.status`` allows it from the current status;
        ``external_id``, ``paused_bytes`` and ``woken_by`` are recorded in the same step (not
        on a repeat)."""
        extra = [F_EXTERNAL_ID, external_id] if external_id is not None else []
        if paused_bytes is not None:
            extra += [F_PAUSED_BYTES, str(paused_bytes)]
        if woken_by is not None:
            extra += [F_WOKEN_BY, woken_by]
        accepted, prev = await self._transition(
            keys=[self.keys.k_machine(machine_id)], args=[target.value, reason, _now(), *extra]
        )
        result = Transition(
            accepted=bool(accepted), previous=MachineStatus(prev) if prev else None, target=target
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

    async def machines_by_status(self) -> dict[str, int]:
        """How many machines are in each status (every status present, zeros included)."""
        flat = cast(
            list[str | int],
            await self._count_by_status(
                keys=[self.keys.K_MACHINES], args=[self.keys.k_machine("")]
            ),
        )
        counts = {s.value: 0 for s in MachineStatus}
        for status, n in zip(flat[::2], flat[1::2], strict=True):
            counts[str(status)] = int(n)
        return counts

    async def _set_fields(self, machine_id: str, fields: dict[str, str]) -> None:
        mapping: dict[Any, Any] = {**fields, F_UPDATED_AT: _now()}
        await self.redis.hset(self.keys.k_machine(machine_id), mapping=mapping)

    async def set_external_id(self, machine_id: str, external_id: str) -> None:
        await self._set_fields(machine_id, {F_EXTERNAL_ID: external_id})

    async def set_daemon_build(self, machine_id: str, version: str, git_sha: str | None) -> None:
        """The version and commit the machine's daemon reported."""
        fields = {F_DAEMON_VERSION: version, F_DAEMON_GIT_SHA: git_sha or ""}
        await self._set_fields(machine_id, fields)

    # --- machine credentials ----------------------------------------------------------------
    async def claim_machine_secret(self, machine_id: str, sealed: str) -> bool:
        """Store the machine's encrypted token unless one is stored already (racing replicas
        agree on the first); True if ``sealed`` is the one stored now."""
        return bool(
            await self.redis.hsetnx(self.keys.k_machine(machine_id), F_SEALED_CREDENTIAL, sealed)
        )

    async def replace_machine_secret(self, machine_id: str, sealed: str) -> None:
        """The machine's encrypted credential from now on (its NATS password renewed:
        controlplane/security/crypto.py renew_connect_secret); the callout refuses the old one."""
        await self.redis.hset(self.keys.k_machine(machine_id), F_SEALED_CREDENTIAL, sealed)

    async def machine_secret(self, machine_id: str) -> str | None:
        return cast(
            str | None, await self.redis.hget(self.keys.k_machine(machine_id), F_SEALED_CREDENTIAL)
        )

    async def machine_secrets(self, machine_ids: list[str]) -> dict[str, str | None]:
        """Many machines' sealed tokens in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for mid in machine_ids:
                pipe.hget(self.keys.k_machine(mid), F_SEALED_CREDENTIAL)
            sealed = await pipe.execute()
        return dict(zip(machine_ids, sealed, strict=True))

    async def machine_access(self, machine_id: str) -> MachineAccess:
        sealed, status, revoked = cast(
            list[str | None],
            await self.redis.hmget(
                self.keys.k_machine(machine_id),
                [F_SEALED_CREDENTIAL, F_STATUS, F_CREDENTIAL_REVOKED],
            ),
        )
        return MachineAccess(sealed_token=sealed, status=MachineStatus(status) if status else None,
                             revoked=bool(revoked))  # fmt: skip

    async def revoke_machine_token(self, machine_id: str) -> None:
        """From now on the auth callout refuses the machine's token. Idempotent."""
        await self.redis.hset(self.keys.k_machine(machine_id), F_CREDENTIAL_REVOKED, _now())


def _new_machine(instance_id: str, provider: str, runtime: RuntimeChoice | None) -> Machine:
    now = datetime.now(UTC)
    kind, platform = runtime or ("namespaces", None)
    return Machine(
        id=ids.new_machine_id(),
        instance_id=instance_id,
        provider=provider,  # type: ignore[arg-type]
        runtime=kind,
        runtime_platform=platform,
        status=MachineStatus.CREATED,
        status_reason="waiting for the provisioner",
        created_at=now,
        updated_at=now,
    )


def _to_hash(struct: msgspec.Struct) -> dict[Any, Any]:
    """A struct as a Redis hash: wire names, None left out, values as strings."""
    raw = msgspec.to_builtins(struct)
    return {k: v if isinstance(v, str) else str(v) for k, v in raw.items() if v is not None}
