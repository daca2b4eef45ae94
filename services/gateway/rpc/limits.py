"""``instances.setLimits`` / ``instances.getLimits``: an instance's own machine limits
(contracts/gateway/limits.py). Lowering is for anyone who may act on the instance; raising
above the platform's default is for the admin; nobody passes the platform's maxima."""

from __future__ import annotations

import structlog

from contracts.errors import Forbidden, InvalidParams
from contracts.gateway.limits import (
    INSTANCES_GET_LIMITS,
    INSTANCES_SET_LIMITS,
    InstanceLimits,
    LimitsOverride,
    SetLimitsParams,
)
from contracts.gateway.types import InstanceRef
from contracts.rpc.jsonrpc import handles
from controlplane.policy import Limits, with_own
from controlplane.settings import Settings
from controlplane.store import Store
from services.gateway.auth import Caller

log = structlog.get_logger(__name__)
_FIELDS = (("memory_mb", "memoryMb"), ("cpus", "cpus"), ("pids", "pids"))
_FIELDS_ALL = (*_FIELDS, ("max_running_machines", "maxRunningMachines"))


def platform_defaults(settings: Settings) -> Limits:
    return Limits(settings.machine_memory_mb, settings.machine_cpus, settings.machine_pids)


def platform_maxima(settings: Settings) -> Limits:
    return Limits(
        settings.machine_max_memory_mb, settings.machine_max_cpus, settings.machine_max_pids
    )


def effective(settings: Settings, instance_id: str, own: LimitsOverride) -> InstanceLimits:
    got = with_own(platform_defaults(settings), own.memory_mb, own.cpus, own.pids)
    return InstanceLimits(
        instance_id=instance_id, memory_mb=got.memory_mb, cpus=got.cpus, pids=got.pids,
        max_running_machines=own.max_running_machines,
        own=[wire for name, wire in _FIELDS_ALL if getattr(own, name) is not None],
    )  # fmt: skip


def raises_max_running(before: int | None, after: int | None) -> bool:
    """Whether ``after`` allows more running machines than ``before`` (None: no limit)."""
    if before is None:
        return False
    return after is None or after > before


class LimitsOps:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    @handles(INSTANCES_SET_LIMITS)
    async def instances_set_limits(self, p: SetLimitsParams, c: Caller) -> InstanceLimits:
        c.require(p.instance_id)
        await self.store.get_instance(p.instance_id)  # NotFound
        defaults, maxima = platform_defaults(self.settings), platform_maxima(self.settings)
        for name, wire in _FIELDS:
            value = getattr(p, name)
            if value is None:
                continue
            if value > getattr(maxima, name):
                raise InvalidParams(
                    f"{wire} {value} is above the platform's maximum {getattr(maxima, name)}",
                    field=f"$.{wire}",
                )
            if value > getattr(defaults, name) and not c.admin:
                raise Forbidden(
                    f"raising {wire} above the platform's default {getattr(defaults, name)} "
                    "needs the admin token"
                )
        before = await self.store.instance_settings.limits(p.instance_id)
        if not c.admin and raises_max_running(before.max_running_machines, p.max_running_machines):
            raise Forbidden(
                f"maxRunningMachines is {before.max_running_machines}: raising or removing it "
                "needs the admin token (send it again to keep it)"
            )
        own = LimitsOverride(memory_mb=p.memory_mb, cpus=p.cpus, pids=p.pids,
                             max_running_machines=p.max_running_machines)  # fmt: skip
        await self.store.instance_settings.set_limits(p.instance_id, own)
        log.info("instance.limits_set", instance_id=p.instance_id, by=c.token_id,
                 memory_mb=p.memory_mb, cpus=p.cpus, pids=p.pids)  # fmt: skip
        return effective(self.settings, p.instance_id, own)

    @handles(INSTANCES_GET_LIMITS)
    async def instances_get_limits(self, p: InstanceRef, c: Caller) -> InstanceLimits:
        c.require(p.instance_id)
        await self.store.get_instance(p.instance_id)
        own = await self.store.instance_settings.limits(p.instance_id)
        return effective(self.settings, p.instance_id, own)
