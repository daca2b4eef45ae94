"""Live env: ``config.env-changed.<scope>`` -> the new .env pushed to every affected running
machine, through the same path as ``machines.refreshEnv``
(``controlplane.machines.machine_config``).

Debounced per scope (a burst of sets is one push per machine) and idempotent: a push writes the
whole .env as the store says now, so a redelivered event writes the same bytes, which the
daemon's content hash ignores (no restart); its ``machine.env-pushed`` event has an id derived
from the burst's first event and the machine, so the stream drops a redelivery's duplicate.
"""

from __future__ import annotations

import hashlib

import structlog

from base.clock import SYSTEM_CLOCK, Clock
from contracts.bus.consumers import Durable
from contracts.bus.events import AnyEvent, EnvChanged, EnvPushed
from contracts.bus.subjects import PLATFORM_SCOPE
from contracts.daemon import machine_files as mf
from contracts.ids import derived_event_id
from contracts.models import Machine
from contracts.status import REFRESHABLE
from controlplane.bus import Bus
from controlplane.calls.daemon_client import DaemonClient, MachineKeys
from controlplane.events.coalesce import Coalescer
from controlplane.events.subscriptions import subscriber
from controlplane.machines.machine_config import (
    InstanceConfig,
    env_content,
    fan_out,
    load_instance_config,
)
from controlplane.process.stage import Stage
from controlplane.settings import Settings
from controlplane.store import Store
from environments.hook import machine_config

log = structlog.get_logger(__name__)


async def log_give_up(_group: object, event: AnyEvent, reason: str) -> None:
    """The give-up of a configuration event's handler (of ``LiveEnv`` and ``Checkouts``): it is
    about no one machine, so nothing fails; it is said loudly."""
    log.error("setup.live_push_gave_up", event_type=type(event).__name__, reason=reason)


class ConfigStage(Stage):
    """A handler group of configuration events (``LiveEnv``, ``Checkouts``): about no one
    machine, debounced per scope by the setup pusher's one ``coalescer``."""

    stage = "setup"

    def __init__(self, coalescer: Coalescer, *, store: Store, bus: Bus, daemons: DaemonClient,
                 settings: Settings, keys: MachineKeys | None = None,
                 clock: Clock = SYSTEM_CLOCK) -> None:  # fmt: skip
        """``coalescer``: the setup pusher's one debounce of configuration events."""
        super().__init__(store=store, bus=bus, daemons=daemons, settings=settings, keys=keys,
                         clock=clock)  # fmt: skip
        self.coalescer = coalescer


class LiveEnv(ConfigStage):
    """``config.env-changed``: the new .env on every affected running machine."""

    @subscriber(EnvChanged, durable=Durable.SETUP_PUSHER_ENV, give_up=log_give_up)
    async def on_env_changed(self, event: EnvChanged) -> None:
        scope = f"env:{event.instance_id or PLATFORM_SCOPE}"
        # The run's first event names it: its events' ids derive from that one.
        work = lambda: self.push_live_env(event.instance_id, cause=event.event_id)  # noqa: E731
        await self.coalescer.run(scope, work)

    async def push_live_env(self, instance_id: str | None, *, cause: str) -> None:
        machines = [m for m in await self.store.list_machines(instance_id)
                    if m.status in REFRESHABLE]  # fmt: skip
        configs: dict[str, InstanceConfig] = {}
        for iid in {m.instance_id for m in machines}:
            configs[iid] = await load_instance_config(self.store, self.settings, iid)

        async def push(m: Machine) -> None:
            await self._push_env_to(m, configs[m.instance_id], cause)

        if self.keys is not None:  # one Redis round trip for every machine's key
            await self.keys.warm([m.id for m in machines])
        failed = await fan_out(machines, push)
        for f in failed:
            log.warning("setup.live_env_failed", machine_id=f.machine_id, error=f.message)
        log.info("setup.live_env_pushed", scope=instance_id or PLATFORM_SCOPE,
                 machines=len(machines), failed=len(failed))  # fmt: skip

    async def push_env_again(self, m: Machine, cause: str) -> None:
        """The machine's .env (and CA bundle) written again, as the store says now: for a
        set-up machine whose daemon started anew, in a home that may be at another path than
        the one the last .env named (a machine taken from the warm pool ran in its slot's)."""
        instance = await load_instance_config(self.store, self.settings, m.instance_id)
        await self._push_env_to(m, instance, cause)

    async def _push_env_to(self, m: Machine, instance: InstanceConfig, cause: str) -> None:
        cfg = await machine_config(self.store, instance, m)
        mc = self.daemons.machine(m.id)
        ca_path = None
        bundle = cfg.bundle()
        if bundle is not None:
            ca_path = (await mc.write_file("~/" + mf.CA_FILE, bundle, 0o644)).path
        content = env_content(cfg, self.settings, ca_path)
        written = await mc.write_file("~/" + mf.ENV_FILE, content, 0o600)
        digest = hashlib.sha256(content.encode()).hexdigest()
        await self.bus.publish(
            EnvPushed(
                event_id=derived_event_id(cause, f"env-pushed/{m.id}"),
                machine_id=m.id,
                env_path=written.path,
                env_bytes=written.bytes_written,
                env_sha256=digest,
            )
        )
