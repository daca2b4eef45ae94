"""``machines.fork``: new machines of the source's instance, each starting with the source's home
as of one instant (the provisioner copies it: providers/local/homes.py); ``machines.snapshot``,
``snapshots.list`` and ``snapshots.delete``: read-only copies kept on the machine's host."""

from __future__ import annotations

import structlog

from base.clock import SYSTEM_CLOCK, Clock, within
from base.retry import Backoff, retry
from contracts.bus.events import MachineCreated, now
from contracts.daemon.rpc import GET_VERSION
from contracts.errors import (
    Conflict,
    DaemonTimeout,
    DaemonUnavailable,
    Forbidden,
    InvalidParams,
    NotFound,
    NotSupported,
    SnapshotLimit,
)
from contracts.gateway.fork import (
    MACHINES_FORK,
    MACHINES_SNAPSHOT,
    SNAPSHOTS_DELETE,
    SNAPSHOTS_LIST,
    ForkedMachines,
    ForkMachineParams,
    Snapshot,
    SnapshotDeleted,
    SnapshotList,
    SnapshotParams,
    SnapshotRef,
)
from contracts.gateway.types import InstanceRef
from contracts.host import rpc as h
from contracts.ids import new_event_id, new_snapshot_id
from contracts.models import Machine, RuntimeChoice
from contracts.rpc.jsonrpc import NoParams, handles
from contracts.status import STOPPABLE, STOPPED_OR_STOPPING, MachineStatus as S
from controlplane.bus import Bus
from controlplane.calls.daemon_client import DaemonClient
from controlplane.policy import keeps_memory
from controlplane.store import Store
from services.gateway.auth import Access, Caller
from services.gateway.rpc.admission import admitted, check_running_limit
from services.gateway.rpc.host_control import HostCalls

log = structlog.get_logger(__name__)

#: The providers whose machines' homes can be copied (providers/local/homes.py,
#: providers/docker/fork.py).
COPYABLE_HOMES = frozenset({"local", "docker"})
#: The providers whose machines' writes outside their homes are kept as an image of their own.
LAYER_IS_AN_IMAGE = frozenset({"docker"})
#: A machine whose home is there to copy: booted (running), or stopped.
FORKABLE = STOPPABLE | STOPPED_OR_STOPPING
#: How long a fork or snapshot with memory waits for its source's daemon to answer again.
SOURCE_BACK_S = 120.0


class ForkOps:
    def __init__(
        self, *, store: Store, bus: Bus, access: Access, hosts: HostCalls, max_snapshots: int,
        daemons: DaemonClient | None = None, clock: Clock = SYSTEM_CLOCK,
    ) -> None:  # fmt: skip
        #: The time of the wait for a memory snapshot's source (its backoff and its limit).
        self.clock = clock
        #: Asks the source's daemon, started again after a checkpoint, whether it is back.
        self.daemons = daemons
        self.store = store
        self.bus = bus
        self.access = access
        self.hosts = hosts
        self.max_snapshots = max_snapshots

    async def _source(self, c: Caller, machine_id: str, what: str) -> Machine:
        source = await self.access.machine(c, machine_id)
        if source.status not in FORKABLE:
            raise Conflict(
                f"machine {source.id} is {source.status.value}; only a booted or stopped machine "
                f"can be {what}",
                data={"status": source.status.value},
            )
        if source.provider not in COPYABLE_HOMES:
            raise NotSupported(
                f"machine {source.id} is a {source.provider} machine: only local and docker "
                "machines' homes can be forked or snapshotted",
                data={"provider": source.provider},
            )
        return source

    @handles(MACHINES_FORK)
    async def machines_fork(self, p: ForkMachineParams, c: Caller) -> ForkedMachines:
        source = await self._source(c, p.machine_id, "forked")
        if p.memory:
            memory_forkable(source)
        # A look first, so that a fork refused does not take its memory image for nothing;
        # the count that holds is the one its records are made under (admitted).
        await check_running_limit(self.store, source.instance_id, None, p.count)
        image = None
        if p.memory:  # one checkpoint for every fork; the source runs on
            image = new_snapshot_id()
            params = h.MemoryImageParams(machine_id=source.id, snapshot_id=image, forks=p.count)
            taken = await self.hosts(h.TAKE_MEMORY_IMAGE, params, machine=source)
            log.info("machine.memory_image_taken", machine_id=source.id, bytes=taken.bytes,
                     pause_ms=taken.pause_ms)  # fmt: skip
        # A fork runs what its source runs, whatever the instance's environment is now: the
        # home (and the layer over the image) it copies was made for that image.
        same = environment_of(source)
        async with admitted(self.store, source.instance_id, adding=p.count):
            forks = [
                await new_machine(
                    self.store,
                    self.bus,
                    source.instance_id,
                    source.provider,
                    source.id,
                    environment=same,
                    runtime=runtime_of(source),
                    memory_image=image,
                )
                for _ in range(p.count)
            ]
        log.info("machine.forked", machine_id=source.id, forks=[m.id for m in forks],
                 memory=p.memory)  # fmt: skip
        if p.memory:
            await self._source_back(source.id)
        return ForkedMachines(machines=forks)

    @handles(MACHINES_SNAPSHOT)
    async def machines_snapshot(self, p: SnapshotParams, c: Caller) -> Snapshot:
        source = await self._source(c, p.machine_id, "snapshotted")
        if p.memory:
            memory_forkable(source)
        snapshot_id = new_snapshot_id()
        # Its place is taken before the copy (slow) starts: calls at once never pass the cap.
        held = await self.store.snapshots.reserve(source.instance_id, snapshot_id,
                                                  self.max_snapshots)  # fmt: skip
        if held is not None:
            raise SnapshotLimit(
                f"instance {source.instance_id} holds {held} snapshot(s) (or is taking them), "
                "as many as it may: delete one first (snapshots.delete)",
                data={"limit": self.max_snapshots},
            )
        try:
            snapshot = await self._take(source, snapshot_id, p)
        except BaseException:
            await self.store.snapshots.release(source.instance_id, snapshot_id)
            raise
        await self.store.snapshots.save(snapshot)
        if p.memory:
            await self._source_back(source.id)
        log.info("machine.snapshot_taken", machine_id=source.id, snapshot_id=snapshot_id,
                 how=snapshot.how, pause_ms=snapshot.pause_ms)  # fmt: skip
        return snapshot

    async def _take(self, source: Machine, snapshot_id: str, p: SnapshotParams) -> Snapshot:
        """The snapshot's copy made on its source's host; its record (not saved yet)."""
        if p.memory:  # the machine checkpointed and running on; kept until deleted
            taken = await self.hosts(h.TAKE_MEMORY_IMAGE, h.MemoryImageParams(
                machine_id=source.id, snapshot_id=snapshot_id), machine=source)  # fmt: skip
            copied, pause_ms = taken.copied, taken.pause_ms
        else:
            copied = (await self.hosts(h.TAKE_SNAPSHOT, h.SnapshotParams(
                machine_id=source.id, snapshot_id=snapshot_id), machine=source)).copied  # fmt: skip
            pause_ms = copied.pause_ms
        return Snapshot(
            id=snapshot_id, name=p.name, instance_id=source.instance_id, machine_id=source.id,
            created_at=now(), how=copied.how, pause_ms=pause_ms, memory=p.memory,
        )  # fmt: skip

    async def _source_back(self, machine_id: str) -> None:
        """Until the source's daemon, started again with its renewed credential, answers: the
        caller may use the source as soon as the call returns. One that is not back in
        SOURCE_BACK_S is left to the prober (logged)."""
        if self.daemons is None:
            return
        try:
            await within(self.clock, SOURCE_BACK_S, self._answers(self.daemons, machine_id))
        except TimeoutError:
            log.warning("machine.memory_source_not_back", machine_id=machine_id,
                        after_s=SOURCE_BACK_S)  # fmt: skip

    async def _answers(self, daemons: DaemonClient, machine_id: str) -> None:
        """Once the machine's daemon answers, asked again after a backoff of ``clock``'s."""
        await retry(lambda: daemons.call(machine_id, GET_VERSION, NoParams(), timeout_s=10),
                    on=(DaemonUnavailable, DaemonTimeout), backoff=Backoff(base=0.05, cap=1.0),
                    clock=self.clock)  # fmt: skip

    async def made_from(self, snapshot: Snapshot, provider: str | None) -> Machine:
        """One more machine of the snapshot's instance, with a copy of it: a machine of its
        source's provider, on whose host the snapshot is kept."""
        source = await self.store.get_machine(snapshot.machine_id)
        if provider not in (None, source.provider):
            raise InvalidParams(
                f"snapshot {snapshot.id} is of a {source.provider} machine: a machine made "
                f"from it is a {source.provider} machine too",
                field="$.provider",
            )
        # A docker snapshot's layer is an image committed over the image its machine ran: the
        # new machine runs that one (a local layer lies over whatever image it is given).
        same = environment_of(source) if source.provider in LAYER_IS_AN_IMAGE else None
        return await new_machine(
            self.store, self.bus, snapshot.instance_id, source.provider,
            from_snapshot=snapshot.id, environment=same, runtime=runtime_of(source),
        )  # fmt: skip

    @handles(SNAPSHOTS_LIST)
    async def snapshots_list(self, p: InstanceRef, c: Caller) -> SnapshotList:
        await self.access.instance_exists(c, p.instance_id)
        return SnapshotList(snapshots=await self.store.snapshots.of_instance(p.instance_id))

    async def snapshot_of(self, c: Caller, snapshot_id: str, instance_id: str) -> Snapshot:
        """The snapshot, if the caller may use it for a machine of ``instance_id``."""
        snapshot = await self.store.snapshots.get(snapshot_id)
        await self.access.instance_exists(c, snapshot.instance_id)
        if snapshot.instance_id != instance_id:
            raise Forbidden(f"snapshot {snapshot_id} is of another instance")
        return snapshot

    @handles(SNAPSHOTS_DELETE)
    async def snapshots_delete(self, p: SnapshotRef, c: Caller) -> SnapshotDeleted:
        snapshot = await self.store.snapshots.get(p.snapshot_id)
        await self.access.instance_exists(c, snapshot.instance_id)
        # Refused (Conflict) while a machine is being made from it; once marked, none is.
        await self.store.snapshots.mark_deleting(snapshot.id)
        source = await self.store.get_machine(snapshot.machine_id)
        await self.hosts(h.DROP_SNAPSHOT, h.SnapshotParams(
            machine_id=source.id, snapshot_id=snapshot.id), machine=source)  # fmt: skip
        await self.store.snapshots.forget(snapshot)
        log.info("machine.snapshot_deleted", snapshot_id=snapshot.id)
        return SnapshotDeleted(deleted=True)


def memory_forkable(source: Machine) -> None:
    """NotSupported unless the machine runs gvisor on the local provider; Conflict unless it
    runs now (a stopped machine has no memory to copy)."""
    if not keeps_memory(source.runtime, source.provider):
        raise NotSupported(
            f"machine {source.id} runs the {source.runtime} runtime on the {source.provider} "
            "provider: only a local gvisor machine can be forked with its memory",
            data={"runtime": source.runtime, "provider": source.provider},
        )
    if source.status not in STOPPABLE:
        raise Conflict(
            f"machine {source.id} is {source.status.value}: only a running machine can be "
            "forked with its memory",
            data={"status": source.status.value},
        )


def environment_of(m: Machine) -> tuple[str, str | None] | None:
    """What ``m`` runs (its environment's description and image), None for the default."""
    return None if m.environment is None else (m.environment, m.environment_image)


def runtime_of(m: Machine) -> RuntimeChoice:
    """A fork's (or a snapshot's machine's) runtime: its source's."""
    return (m.runtime, m.runtime_platform)


async def new_machine(
    store: Store,
    bus: Bus,
    instance_id: str,
    provider: str,
    fork_of: str | None = None,
    from_snapshot: str | None = None,
    *,
    environment: tuple[str, str | None] | None = None,
    runtime: RuntimeChoice | None = None,
    memory_image: str | None = None,
) -> Machine:
    """A machine made and announced (``machine.created``): the instance's current one, or one
    more machine of the instance: a fork of ``fork_of``, or one with a copy of the snapshot
    ``from_snapshot``; ``environment`` (description, image): what it runs, already resolved;
    ``runtime``: its runtime (None: ``namespaces``); ``memory_image``: a fork with memory's
    image, taken on its source's host."""
    current = fork_of is None and from_snapshot is None
    machine = await store.create_machine(instance_id, provider, current=current, runtime=runtime)
    if environment is not None:  # resolved already: the provisioner takes it as it is
        await store.environments.set_of_machine(machine.id, *environment)
    if from_snapshot is not None:  # before its event: the copy comes after it
        await _hold(store, machine.id, from_snapshot)
    event = MachineCreated(
        event_id=new_event_id(),
        machine_id=machine.id,
        instance_id=instance_id,
        provider=provider,
        fork_of=fork_of,
        from_snapshot=from_snapshot,
        memory_image=memory_image,
    )
    try:
        await bus.publish(event)
    except Exception as exc:  # the record exists; say why it will not move
        await store.transition(machine.id, S.FAILED, f"could not publish event: {exc}")
        raise
    log.info("machine.created", machine_id=machine.id, instance_id=instance_id, fork_of=fork_of)
    return machine


async def _hold(store: Store, machine_id: str, snapshot_id: str) -> None:
    """The new machine holds its snapshot until it is made; a snapshot deleted since it was
    read (NotFound) fails the machine, which no provisioner is then told of."""
    try:
        await store.snapshots.use(snapshot_id, machine_id)
    except NotFound as exc:
        await store.transition(machine_id, S.FAILED, exc.message)
        raise
