"""The provisioner's part of making and removing machines: ``machine.created`` -> token,
environment, provider start, ``machine.provisioned``; ``machine.archived`` -> provider
removal, ``machine.files-removed``."""

from __future__ import annotations

from collections.abc import Callable

import aiodocker
import structlog

from base.clock import SYSTEM_CLOCK, Clock
from contracts.bus.consumers import Durable
from contracts.bus.events import (
    HomeCopy,
    MachineArchived,
    MachineCreated,
    MachineFilesRemoved,
    MachineProvisioned,
)
from contracts.errors import DiskLimit, FleetError, NotFound, NotSupported, ProviderError
from contracts.ids import derived_event_id
from contracts.models import Machine
from contracts.status import MachineStatus as S
from controlplane.events.consumer import Permanent, Retry
from controlplane.events.subscriptions import subscriber
from controlplane.machines.revoke import revoke_machine
from controlplane.security.crypto import mint_machine_token
from controlplane.settings import Settings
from controlplane.store import (
    F_EXTERNAL_ID,
    F_HOST_ID,
    F_SEALED_CREDENTIAL,
    disk as store_disk,
)
from environments.shared_builds import SharedBuilds
from providers.base import HomeCloner, Provider, capability
from providers.host_memory import mem_available_mb
from providers.sandbox import NotFrozen
from services.provisioner.builds.environment import (
    STAGE as ENVIRONMENT_STAGE,
    DevcontainerDetector,
    EnvironmentContext,
    Resolved,
    machine_limits,
    resolve_image,
)
from services.provisioner.claims import PoolClaims, machine_pool
from services.provisioner.host import HostHeartbeat, HostMachines, room_left

log = structlog.get_logger(__name__)


class CreateArchive:
    """``machine.created`` (its token, its environment, a provider's start, a fork's home,
    ``machine.provisioned``) and ``machine.archived`` (its provider's removal) on this host."""

    def __init__(
        self, machines: HostMachines, claims: PoolClaims, settings: Settings, *,
        heartbeat: HostHeartbeat | None = None,
        engine: Callable[[], aiodocker.Docker] | None = None,
        shared: SharedBuilds | None = None, clock: Clock = SYSTEM_CLOCK,
    ) -> None:  # fmt: skip
        """``heartbeat``: the host's (None: never drained), whose memory the capacity gate
        reads; ``engine``: the Docker engine environments' images are on (None: none
        configured); ``shared``: the process's environment builds and checkouts (None: it
        builds no environment)."""
        self.machines = machines
        #: The give-up of the declarations that name none: the host's.
        self.give_up = machines.give_up
        self.claims = claims
        self.settings = settings
        self.heartbeat = heartbeat
        self.engine = engine
        self.shared = shared
        #: What the instance's repos say of their devcontainer.json, for a short while.
        self.detector = DevcontainerDetector(
            clock=clock, checkouts=None if shared is None else shared.checkouts
        )

    async def room(self, held: frozenset[str]) -> int | None:
        """The capacity gate of machine.created: a full host takes none (docs/hosts.md)."""
        # The store's flag, not the last heartbeat's: a drain takes effect at the next fetch
        # (or at the answer of one under way), so hosts.drain's rebuilds land elsewhere.
        draining = await self.machines.store.hosts.draining(self.machines.host_id)
        memory = mem_available_mb if self.heartbeat is None else self.heartbeat.memory
        return await room_left(self.machines.store, self.settings, held, draining=draining,
                               available_mb=memory)  # fmt: skip

    @subscriber(MachineCreated, durable=Durable.PROVISIONER, room=room)
    async def on_created(self, event: MachineCreated) -> None:
        await self._home_is_here(event)
        provider = self.machines.providers.get(event.provider)
        # One round trip: read, compare-and-set to provisioning, and claim the token we mint
        # unless one is stored (racing replicas agree on the first; a redelivery reuses it).
        token = mint_machine_token()
        sealed = self.machines.box.encrypt(token)
        step = await self.machines.store.stages.advance(
            event.machine_id, S.PROVISIONING, "starting the machine",
            claim={F_SEALED_CREDENTIAL: sealed} if provider is not None else None,
            move={F_HOST_ID: self.machines.host_id},
        )  # fmt: skip
        machine, previous = step.machine, step.transition.previous
        if machine is None:
            raise NotFound(f"machine {event.machine_id} not found")
        if previous is S.BOOTING and machine.external_id:
            await self._announce(event, machine.external_id)  # crashed before announcing
            await self._restart_if_gone(machine, provider, step.sealed_token)
            return
        if not step.transition.accepted:
            log.info("provision.skipped", status=machine.status.value)
            return
        if provider is None:
            raise Permanent(f"no provider named {event.provider!r} is configured")
        if step.sealed_token != sealed:
            assert step.sealed_token is not None
            token = self.machines.box.decrypt(step.sealed_token)
        resolved = await self._environment(event, provider)
        if resolved is not None:
            pool = await machine_pool(
                self.machines.store, event.machine_id, event.provider, resolved.image
            )
            try:
                await self._start(event, provider, token, pool)
            except NotSupported as exc:  # refused by name: every retry would meet the same
                raise Permanent(f"{type(exc).__name__}: {exc.message}") from None

    async def _restart_if_gone(
        self, machine: Machine, provider: Provider | None, sealed: str | None
    ) -> None:
        """A booting machine's create, delivered again: the delivery before may have ended
        between the start and the daemon's first word (a provisioner killed after claiming a
        pooled machine, before telling it who it is). The provider's start leaves a machine
        that runs be, and starts one that cannot serve afresh."""
        if (
            provider is None
            or sealed is None
            or machine.host_id not in (None, self.machines.host_id)
        ):
            return
        async with self.machines.store.locks.hold(f"provision:{machine.id}", ttl_s=10) as held:
            if not held:
                return  # being started right now
            external_id = await provider.start(machine.id, self.machines.box.decrypt(sealed))
        if external_id != machine.external_id:
            log.warning("provision.restarted", was=machine.external_id, now=external_id)
            await self.machines.store.set_external_id(machine.id, external_id)

    async def _environment(self, event: MachineCreated, provider: Provider) -> Resolved | None:
        """The machine's environment, resolved once (a redelivery finds it recorded); None
        when it cannot be had: the machine failed at stage ``environment``."""
        machine = await self.machines.store.get_machine(event.machine_id)
        if machine.environment is not None:
            return Resolved(machine.environment, machine.environment_image)
        env = await self.machines.store.environments.of_instance(machine.instance_id)
        runs_images = getattr(provider, "runs_images", False)
        try:
            docker = self._engine_for(env is not None, runs_images)
            ctx = EnvironmentContext(self.machines.store, self.machines.bus, machine, docker,
                                     event.event_id, self.settings,
                                     self.detector if runs_images else None,
                                     self.shared)  # fmt: skip
            resolved = await resolve_image(ctx, env)
            if resolved.image is not None and not runs_images:
                raise NotSupported(f"provider {event.provider} cannot run an environment's image")
            await machine_limits(self.machines.store, self.settings, machine)  # what it asks fits
        except FleetError as exc:
            await self.machines.fail(
                machine.id,
                ENVIRONMENT_STAGE,
                f"{type(exc).__name__}: {exc.message}",
                event.event_id,
            )
            return None
        await self.machines.store.environments.set_of_machine(
            machine.id, resolved.environment, resolved.image
        )
        log.info("provision.environment", environment=resolved.environment, image=resolved.image)
        return resolved

    def _engine_for(self, named: bool, runs_images: bool) -> aiodocker.Docker | None:
        """The engine a machine's image is on: a ``named`` image needs it (ProviderError when
        this host has none); a provider that ``runs_images`` looks for a repo's
        devcontainer.json there when this host has one. A host with none runs default
        machines."""
        if self.engine is None or not (named or runs_images):
            return None
        try:
            return self.engine()
        except ProviderError:
            if named:
                raise
            return None

    async def _start(
        self, event: MachineCreated, provider: Provider, token: str, pool: str | None
    ) -> None:
        mid = event.machine_id
        # Short TTL: a provisioner that dies holding it must not stall the restarted one long.
        lock = (f"provision:{mid}", self.machines.store.locks.token())
        if not await self.machines.store.locks.take(*lock, ttl_s=10):
            # another delivery is starting this very machine right now
            raise Retry("another provisioner is starting this machine", delay_s=1.0)
        await self.machines.store.hosts.took(self.machines.host_id, mid)
        released = False
        try:
            copied = await self._fork_home(event, provider)
            # A fork's home is made already: a pooled machine is given it.
            external_id, pooled = await self.claims.obtain(
                pool, provider, mid, token, home_kept=copied is not None
            )
            await self.machines.egress.enforce_on(mid, event.instance_id, event.provider,
                                                  at_start=True)  # fmt: skip
            if (image := event.memory_image) is not None:  # its last fork's restore drops it
                await self.machines.disk.took(
                    provider, event.instance_id, store_disk.image(image), image
                )
            # The booting transition and the lock's release in one step; a pooled machine's
            # start keeps the lock until the machine is told who it is (a start that saw it
            # untold meanwhile would take it for an orphan: providers/local/namespaces.py).
            step = await self.machines.store.stages.advance(
                mid, S.BOOTING, "waiting for the daemon to report ready",
                move={F_EXTERNAL_ID: external_id, F_HOST_ID: self.machines.host_id},
                release=lock if pooled is None else None,
            )  # fmt: skip
            released = pooled is None
            try:
                if step.transition.accepted:  # moved now, or a repeat: deduplicated
                    await self._announce(event, external_id, copied)
            finally:
                # Only now: its ready report is to come after provisioned. Told even when the
                # announce failed (the redelivery announces): untold, it would wait forever.
                if pooled is not None:
                    await self.claims.hand_over(pooled, provider, mid, token)
        finally:
            if not released:  # failed, or a pooled machine's hand-over: free it
                await self.machines.store.locks.release(*lock)

    async def _home_is_here(self, event: MachineCreated) -> None:
        """A fork, or a machine from a snapshot, is made on the host of the home it copies:
        another host's provisioner leaves it to that host's."""
        if event.fork_of is not None:
            source = event.fork_of
        elif event.from_snapshot is not None:
            try:
                source = (await self.machines.store.snapshots.get(event.from_snapshot)).machine_id
            except NotFound:  # deleted once its machine was made: this create came again
                return  # (the machine held the snapshot until then), and its status skips it
        else:
            return
        host = (await self.machines.store.get_machine(source)).host_id
        if host not in (None, self.machines.host_id):
            raise Retry(f"its home is copied from {source}, on host {host}", delay_s=0.2)

    async def _fork_home(self, event: MachineCreated, provider: Provider) -> HomeCopy | None:
        """A fork's home, copied from its source's, or a snapshot's (None: neither)."""
        # A fork with memory: the copy of its source's home taken with the image.
        source = event.memory_image or event.fork_of or event.from_snapshot
        if source is None:
            return None
        cloner = capability(provider, HomeCloner)
        if cloner is None:
            raise Permanent(f"the {event.provider} provider cannot fork machines")
        iid, field = event.instance_id, store_disk.home(event.machine_id)
        need = await self.machines.disk.measured(
            provider, iid, source, machine=source == event.fork_of
        )
        try:
            async with self.machines.disk.held(
                iid, field, need, f"machine {event.machine_id}'s home"
            ):
                copied = await cloner.clone_home(source, event.machine_id)
        except DiskLimit as exc:
            raise Permanent(exc.message) from None
        except (OSError, NotFrozen) as exc:  # a copy retried would meet the same
            raise Permanent(f"could not copy {source}'s home: {exc}") from None
        await self.machines.disk.took(provider, iid, field, event.machine_id)
        return copied

    async def _announce(
        self, cause: MachineCreated, external_id: str, copied: HomeCopy | None = None
    ) -> None:
        await self.machines.bus.publish(
            MachineProvisioned(
                event_id=derived_event_id(cause.event_id, "provisioned"),
                machine_id=cause.machine_id,
                provider=cause.provider,
                external_id=external_id,
                home_copy=copied,
            )
        )

    async def stop_failed(self, event: MachineArchived, reason: str) -> None:
        # The machine is archived already (that is what the event says): nothing to fail.
        log.error("provision.stop_failed", reason=reason)

    @subscriber(MachineArchived, durable=Durable.PROVISIONER_ARCHIVE, give_up=stop_failed)
    async def on_archived(self, event: MachineArchived) -> None:
        machine = await self.machines.store.get_machine(event.machine_id)
        # First, so that a provider that cannot stop the machine does not keep it connected;
        # on every host (idempotent): its credentials must not wait for its host to be up.
        await revoke_machine(self.machines.store, self.machines.bus.nc, machine.id)
        if not self.machines.owns(machine):
            return  # its own host's provisioner stops it
        provider = self.machines.providers.get(machine.provider)
        if provider is not None:
            self.machines.egress.forget(machine.id)
            await provider.remove(machine.id)
        await self.machines.store.stops.forget_activity(
            machine.id
        )  # auto-stop has nothing left to watch
        await self.machines.store.disk.forget(machine.instance_id, store_disk.home(machine.id),
                                     store_disk.paused(machine.id))  # fmt: skip
        log.info("provision.machine_removed", provider=machine.provider)
        # Only now: what waits for ``archived`` may count on nothing of the machine being left.
        t = await self.machines.store.transition(machine.id, S.ARCHIVED, event.reason)
        if t.moved:
            await self.machines.bus.publish(
                MachineFilesRemoved(
                    event_id=derived_event_id(event.event_id, "files-removed"),
                    machine_id=machine.id,
                    reason=event.reason,
                )
            )
