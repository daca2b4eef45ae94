"""Rebuilding a lost host's machines by themselves (``FLEET_HOST_LOST_REBUILD_S``, off at 0;
docs/hosts.md): once a host has been lost for that long, each of its ``lost`` machines that is
its instance's current one is replaced as ``machines.rebuild`` would: a new machine (the
instance's repos and env, pushed by the setup pusher as to any machine), taken by a live host
with room, and the lost one archived with a reason naming its host (``archiving`` until its
host, which has its files, is back to remove them).

Each replacement is made under a key derived from the machine it replaces (one Lua step,
``controlplane/create_once.py``), so prober replicas and later sweeps make one machine, and
the events of a repeat have the same derived ids. The lost machine is archived, so a host that
comes back stops it if it still runs and never resumes it (its archive durable).
"""

from __future__ import annotations

import structlog

from contracts.bus.events import MachineArchived
from contracts.gateway.hosts import HostInfo
from contracts.ids import derived_event_id
from contracts.status import MachineStatus as S
from controlplane import create_once
from controlplane.bus import Bus
from controlplane.hosts import has_room
from controlplane.settings import Settings
from controlplane.store import CreateOnce, Store

log = structlog.get_logger(__name__)

#: The key scope of the prober's rebuilds (a token's id is the scope of a client's keys).
SCOPE = "host-loss"
METHOD = "host.lostRebuild"


class LostRebuilder:
    def __init__(self, *, store: Store, bus: Bus, settings: Settings) -> None:
        self.store = store
        self.bus = bus
        self.ttl_s = settings.idempotency_ttl_s

    async def rebuild(self, host: HostInfo, machine_ids: list[str], hosts: list[HostInfo]) -> int:
        """Replace each lost machine of ``host`` that is its instance's current one, while a
        live host has room; returns how many it replaced."""
        done = 0
        for machine_id in machine_ids:
            if not any(has_room(h) for h in hosts if h.host_id != host.host_id):
                log.warning("host.lost_rebuild_waits", host_id=host.host_id,
                            reason="no live host with room")  # fmt: skip
                break
            done += await self._replace(host.host_id, machine_id)
        return done

    async def _replace(self, host_id: str, machine_id: str) -> int:
        machine = await self.store.get_machine(machine_id)
        if machine.status is not S.LOST:
            return 0
        instance = await self.store.get_instance(machine.instance_id)
        if instance.current_machine_id != machine_id:
            return 0  # replaced already (by a user's rebuild, or by this one earlier)
        once = CreateOnce(scope=SCOPE, key=machine_id, ttl_s=self.ttl_s,
                          fingerprint=create_once.fingerprint(METHOD, machine_id))  # fmt: skip

        async def archive(replaced: str) -> None:
            reason = f"its host {host_id} is lost: rebuilt on a live host"
            if (await self.store.transition(replaced, S.ARCHIVING, reason)).accepted:
                event_id = derived_event_id(replaced, "machine.archived")
                await self.bus.publish(
                    MachineArchived(event_id=event_id, machine_id=replaced, reason=reason)
                )

        new = await create_once.make(
            self.store, self.bus, instance.id, machine.provider, once, archive
        )
        log.warning("host.machine_rebuilt", host_id=host_id, machine_id=machine_id,
                    replaced_by=new.id, instance_id=instance.id)  # fmt: skip
        return 1
