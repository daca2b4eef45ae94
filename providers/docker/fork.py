"""Forks and snapshots of ``docker`` machines (providers/base.py's ``HomeCloner`` and
``SnapshotTaker``): a fork's home volume is its source's as of one instant, and a fork of a
machine of an environment's image runs the layer committed of its source's container at that
instant (providers/docker/copy.py). A snapshot is the same copy kept aside: a volume
``fleet-<snapshotId>-snapshot`` (no container mounts it: read-only to every machine) and, for such
a machine, its layer image; a machine made from it gets a copy of the volume and a tag of its own
of the layer.

A fork gets a code store and a token volume of its own, made by its start as for any machine:
the source's are never copied (its token is the source's secret; its code, the source's choice).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiodocker
import structlog

from base.poolwire import POOL_SLOT_VAR, POOL_STDIN_VAR
from contracts.bus.events import HomeCopy
from contracts.errors import ProviderError
from contracts.ids import SNAPSHOT_ID_RE
from providers.docker.copy import (
    LABEL_SNAPSHOT,
    CopySource,
    HomeCopier,
    copy_record,
    drop_layer,
    layer_ref,
    snapshot_volume,
)
from providers.docker.home import home_volumes, remove_volume, stopped_home, volume_exists
from providers.docker.names import (
    LABEL_ENVIRONMENT,
    LABEL_MACHINE,
    LABEL_POOL,
    LABEL_POOL_OWNER,
    LABEL_UID,
    volume_name,
)
from providers.docker.users import volume_uid

log = structlog.get_logger(__name__)

ContainerOf = Callable[[str], Awaitable[aiodocker.containers.DockerContainer | None]]


class DockerForks:
    """Forks and snapshots on one engine; ``container``: a machine's container, if it has one."""

    def __init__(self, copier: HomeCopier, container: ContainerOf) -> None:
        self.copier = copier
        self.docker = copier.docker
        self._container = container

    async def clone_home(self, source_id: str, machine_id: str) -> HomeCopy:
        """``machine_id``'s home volume (and layer), ``source_id``'s as of one instant (a
        machine, running or stopped, or a snapshot); kept if made already (a redelivered
        create), as is how it was made."""
        if (copied := await self.copier.recorded(machine_id)) is not None:
            return copied
        source = await self._source(source_id)
        labels = {LABEL_MACHINE: machine_id, **await self._uid_of(source)}
        copied = await self.copier.copy(source, volume_name(machine_id), labels, machine_id)
        await self.copier.record(machine_id, copied)
        log.info("provider.docker_home_cloned", machine_id=machine_id, source=source_id,
                 pause_ms=copied.pause_ms, took_ms=copied.took_ms)  # fmt: skip
        return copied

    async def take_snapshot(self, machine_id: str, snapshot_id: str) -> HomeCopy:
        source = await self._source(machine_id)
        labels = {LABEL_SNAPSHOT: snapshot_id, **await self._uid_of(source)}
        return await self.copier.copy(source, snapshot_volume(snapshot_id), labels, snapshot_id)

    async def drop_snapshot(self, snapshot_id: str) -> bool:
        """The snapshot's volume and its tag of its layer (machines made from it have theirs)."""
        found = await volume_exists(self.docker, snapshot_volume(snapshot_id))
        await drop_layer(self.docker, snapshot_id)
        await remove_volume(self.docker, snapshot_volume(snapshot_id))
        return found

    async def forget(self, machine_id: str) -> None:
        """What a machine made by a copy has beside its home: the record, its layer's tag."""
        await remove_volume(self.docker, copy_record(machine_id))
        await drop_layer(self.docker, machine_id)

    async def layer(self, machine_id: str) -> dict[str, Any] | None:
        """The machine's layer image (``inspect``'s answer), if it was made by a copy of one."""
        try:
            return await self.docker.images.inspect(layer_ref(machine_id))
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return None
            raise ProviderError(f"docker: {exc.message}") from None

    async def _uid_of(self, source: CopySource) -> dict[str, str]:
        """The label of the uid the source's home holds (providers/docker/users.py): its copy
        keeps it, as it keeps its files' owner; a copy is its own tenant's (the same instance)."""
        uid = await volume_uid(self.docker, source.volume)
        return {} if uid is None else {LABEL_UID: str(uid)}

    async def _source(self, source_id: str) -> CopySource:
        if SNAPSHOT_ID_RE.match(source_id):  # no process changes a snapshot: nothing to pause
            volume = snapshot_volume(source_id)
            if not await volume_exists(self.docker, volume):
                raise ProviderError(f"snapshot {source_id} is not on this host's engine")
            kept = await self.layer(source_id)
            return CopySource(source_id, volume, layer=layer_ref(source_id) if kept else None)
        c = await self._container(source_id)
        if c is None:  # stopped (its container removed): its home is where its stop left it
            volume = await stopped_home(self.docker, source_id) or volume_name(source_id)
            # A missing volume would be made, empty, by the copy's mount: refused instead.
            if not await volume_exists(self.docker, volume):
                raise ProviderError(f"machine {source_id} has no home on this host's engine")
            return CopySource(source_id, volume)
        homes = home_volumes(c)
        if not homes:
            raise ProviderError(f"docker: container {c.id[:12]} has no home volume")
        keeps_writes = LABEL_ENVIRONMENT in (c["Config"]["Labels"] or {})
        return CopySource(source_id, homes[0], c, commit=keeps_writes)


def with_layer(config: dict[str, Any], layer: Mapping[str, Any]) -> None:
    """``config`` (a machine's, of the layer's image) with what the committed container's config
    left in the layer that is not this machine's: a container that came from the warm pool leaves
    the pool's variables, which would make the supervisor wait for an identity on its stdin,
    and its labels. A variable named with no ``=`` is unset; a label cannot be, so it is blanked."""
    if LABEL_POOL not in (layer["Config"].get("Labels") or {}):
        return
    config["Env"] = [*config["Env"], POOL_SLOT_VAR, POOL_STDIN_VAR]
    config["Labels"] = {LABEL_POOL: "", LABEL_POOL_OWNER: "", **config["Labels"]}
