"""What a pipeline stage that talks to daemons depends on, declared once and injected."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import ClassVar

from base.clock import SYSTEM_CLOCK, Clock
from contracts.bus.events import Event
from contracts.rpc.jsonrpc import AnySpec
from controlplane.bus import Bus
from controlplane.calls.daemon_client import DaemonClient, MachineKeys
from controlplane.machines.failures import fail_machine
from controlplane.process.metrics import Metrics
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import Store


class Stage:
    #: The stage named in `machine.failed` when this stage gives up.
    stage = "stage"
    #: The daemon methods this stage calls: their metrics series start at 0.
    daemon_methods: ClassVar[tuple[AnySpec, ...]] = ()

    def __init__(
        self,
        *,
        store: Store,
        bus: Bus,
        daemons: DaemonClient,
        settings: Settings,
        keys: MachineKeys | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.store = store
        self.bus = bus
        self.daemons = daemons
        self.settings = settings
        #: The daemon client's key cache when wired (warmed before a fan-out to many machines).
        self.keys = keys
        #: What the stage's waits and deadlines are measured on (a test's manual clock).
        self.clock = clock

    async def give_up(self, event: Event, reason: str) -> None:
        await self.fail(event, reason, self.stage)

    async def fail(self, event: Event, reason: str, stage: str) -> None:
        await fail_machine(self.store, self.bus, event.machine_id, stage=stage, reason=reason,
                           cause_event_id=event.event_id)  # fmt: skip


def wired_daemons(
    settings: Settings, store: Store, bus: Bus, metrics: Metrics | None,
    methods: tuple[AnySpec, ...],
) -> tuple[MachineKeys, DaemonClient]:  # fmt: skip
    """A stage's daemon client over ``bus``, with its key cache; ``methods``: those it calls
    (their metrics series start at 0)."""
    keys = MachineKeys(store, SecretBox(settings.secret_key))
    daemons = DaemonClient(bus.nc, keys=keys, timeout_s=settings.rpc_timeout_s,
                           metrics=metrics, methods=methods)  # fmt: skip
    return keys, daemons


async def connect(
    settings: Settings, stack: AsyncExitStack, name: str, *, publish_budget_s: float | None = None
) -> tuple[Store, Bus]:
    """The Redis store and the NATS bus every service needs, entered into its exit stack."""
    store = await stack.enter_async_context(Store.of(settings))
    bus = await stack.enter_async_context(
        Bus(settings, name=name, publish_budget_s=publish_budget_s)
    )
    return store, bus
