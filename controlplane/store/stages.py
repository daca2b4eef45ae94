"""What the pipeline's stages read and write per event, in as few round trips as possible
(``store.stages``).

A stage reads the machine, compare-and-sets its status, claims or reads its token and releases
a lock; as a round trip each, with a thousand machines in flight, those waits and not the work
would set the pipeline's pace. So ``advance`` is one Lua call doing all
of it under the same compare-and-set rules as ``Store.transition`` (the script is generated from
``contracts.status`` like that one); ``setup_inputs`` reads everything a setup push needs in one
pipelined round trip.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

import msgspec
import structlog

from contracts.daemon.machine_files import CronJob
from contracts.models import Machine, Repo
from contracts.status import MachineStatus
from controlplane.store import scripts as store_scripts
from controlplane.store.keys import F_SEALED_CREDENTIAL

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from controlplane.store.keys import Keys

log = structlog.get_logger(__name__)


class Transition(msgspec.Struct, frozen=True):
    """What a compare-and-set status change did (``contracts.status.can_advance`` decides)."""

    #: The table admitted previous -> target: the machine is at ``target`` now, moved there by
    #: this call or already there (a repeat the table admits, which rewrites nothing).
    accepted: bool
    #: The status before the call (None: there is no such machine).
    previous: MachineStatus | None
    target: MachineStatus

    @property
    def moved(self) -> bool:
        """This call changed the status (not a repeat of a transition already made)."""
        return self.accepted and self.previous is not self.target


class Advanced(msgspec.Struct, frozen=True):
    """An ``advance``: the transition, and the machine as it is after it."""

    transition: Transition
    #: None: there is no such machine.
    machine: Machine | None
    #: The machine's sealed token (None: none minted yet).
    sealed_token: str | None


class SetupInputs(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a setup push reads from Redis, read in one round trip."""

    platform_env: dict[str, str]
    instance_env: dict[str, str]
    cron: list[CronJob]
    repos: list[Repo]
    cloned: set[str]
    ssh_keys: list[str] = []


def _pairs(fields: Mapping[str, str] | None) -> list[str]:
    flat = [str(len(fields or {}))]
    for name, value in (fields or {}).items():
        flat += [name, value]
    return flat


class StageRecords:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._k = keys
        self._script = store_scripts.BoundScript(store_scripts.ADVANCE)

    async def advance(
        self,
        machine_id: str,
        target: MachineStatus,
        reason: str,
        *,
        require: str = "",
        always: Mapping[str, str] | None = None,
        claim: Mapping[str, str] | None = None,
        move: Mapping[str, str] | None = None,
        release: tuple[str, str] | None = None,
    ) -> Advanced:
        """Compare-and-set the status to ``target`` (as ``Store.transition``), in one step:
        only if field ``require`` is set; ``always`` fields set whatever happens, ``claim``
        fields set if absent when accepted, ``move`` fields set when the status moves; the lock
        ``release`` = (name, token) released if still ours. Returns the machine as it is after."""
        keys = [self._k.k_machine(machine_id)] + ([self._k.k_lock(release[0])] if release else [])
        now = datetime.now(UTC).isoformat()
        args = [target.value, reason, now, require, release[1] if release else ""]
        args += _pairs(always) + _pairs(claim) + _pairs(move)
        accepted, prev, flat = await self._script.on(self._redis)(keys=keys, args=args)
        t = Transition(accepted=bool(accepted), previous=MachineStatus(prev) if prev else None,
                       target=target)  # fmt: skip
        if t.moved:
            log.info("machine.status_changed", machine_id=machine_id, status=target.value,
                     previous=prev, reason=reason)  # fmt: skip
        if not flat:
            return Advanced(transition=t, machine=None, sealed_token=None)
        h = dict(zip(flat[::2], flat[1::2], strict=True))
        machine = msgspec.convert(h, Machine, strict=False)
        return Advanced(transition=t, machine=machine, sealed_token=h.get(F_SEALED_CREDENTIAL))

    async def setup_inputs(self, instance_id: str, machine_id: str) -> SetupInputs:
        # Issued together: the auto-pipelining client sends them in one pipeline with the other
        # handlers' commands of this loop turn (an explicit pipeline would be a round trip of
        # its own per machine).
        r = self._redis
        platform, instance, cron, repos, cloned, keys = await asyncio.gather(
            r.hgetall(self._k.K_PLATFORM_ENV), r.hgetall(self._k.k_instance_env(instance_id)),
            r.get(self._k.k_cron(instance_id)), r.hgetall(self._k.k_repos(instance_id)),
            r.smembers(self._k.k_cloned(machine_id)), r.get(self._k.k_ssh_keys(instance_id)),
        )  # fmt: skip
        return SetupInputs(
            platform_env=cast(dict[str, str], platform),  # a decoding client: str, not bytes
            instance_env=cast(dict[str, str], instance),
            cron=msgspec.json.decode(cron, type=list[CronJob]) if cron else [],
            repos=[msgspec.json.decode(repos[p], type=Repo) for p in sorted(repos)],
            cloned=cast(set[str], cloned),
            ssh_keys=msgspec.json.decode(keys, type=list[str]) if keys else [],
        )
