"""The fast layer's world: the real stage services and gateway, wired to in-memory fakes.

No server is started here: the store is the real ``Store`` on ``fakeredis`` (its Lua scripts
run as they are), the bus is ``FakeBus``, daemons are ``FakeDaemons``, the provider is
``FakeProvider``. These fixtures shadow the suite's ``settings``/``store``/``bus``, which start
real servers, so a fast test cannot reach one by accident.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fakeredis
import msgspec
import pytest

from base.clock import SYSTEM_CLOCK, Clock
from contracts.errors import error_from_wire
from contracts.models import Instance, Machine
from contracts.rpc.jsonrpc import Dispatcher
from controlplane.security.crypto import SecretBox, generate_secret_key
from controlplane.settings import Settings
from controlplane.store import Store
from environments.shared_builds import SharedBuilds
from fleet.client import FleetClient
from services.gateway.auth import AuditLog, Caller, CallerResolver
from services.gateway.compose import Gateway, compose
from services.prober.service import Prober, prober as make_prober
from services.provisioner.builds.environment_builds import EnvironmentBuilds
from services.provisioner.host_rpc_server import HostMethods, no_engine
from services.provisioner.service import Provisioner, provisioner as make_provisioner
from services.setup_pusher.service import SetupPusher, setup_pusher
from tests.fakes import FakeBus, FakeDaemons, FakeProvider
from tests.fakes.client import InMemoryGateway
from tests.fakes.hosts import InProcessHosts
from tests.fakes.providers import FakeHistory
from tests.fakes.repo_check import FakeRepoCheck

ADMIN = Caller(token_id="admin")
PLATFORM_SHA = "a" * 40
#: The platform's code history (child: parents): the fake daemons' "0"*40 is behind the
#: platform's "a"*40, "b"*40 is ahead of it, "d"*40 branched off "0"*40 (diverged).
HISTORY = {"0" * 40: [], PLATFORM_SHA: ["0" * 40], "b" * 40: [PLATFORM_SHA], "d" * 40: ["0" * 40]}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        # The provisioner's host-side checkouts (host.checkEnvironment) go there.
        data_dir=str(tmp_path / "data"),
        secret_key=generate_secret_key(),
        admin_token="fast-admin-token",
        log_level="warning",
        max_deliver=3,
        probe_timeout_s=30.0,
        probe_interval_s=0.0,  # between probes: a bare yield, never a wait
        boot_timeout_s=120.0,
        clone_timeout_s=300.0,
        config_debounce_s=0.0,  # the fake bus delivers one at a time: nothing to coalesce
    )


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)
    try:
        # Not the default prefix: a key spelled without the store's prefix shows here.
        yield Store.on_client(client, key_prefix="fast-test:")
    finally:
        await client.aclose()


@pytest.fixture
def bus(settings: Settings) -> FakeBus:
    return FakeBus(settings)


@dataclass
class World:
    settings: Settings
    store: Store
    bus: FakeBus
    daemons: FakeDaemons
    provider: FakeProvider
    box: SecretBox
    provisioner: Provisioner
    setup: SetupPusher
    prober: Prober
    api: Gateway
    dispatcher: Dispatcher[Caller]

    async def rpc(self, method: str, params: dict[str, Any] | None = None,
                  caller: Caller = ADMIN) -> Any:  # fmt: skip
        """Call a gateway method with a JSON body, as POST /rpc does; its result as JSON, or
        the FleetError its answer carries."""
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
        answer = await self.dispatcher.handle(json.dumps(body).encode(), caller)
        assert answer is not None
        response = json.loads(answer)
        if "error" in response:
            raise error_from_wire(response["error"])
        return response["result"]

    async def machine(self, machine_id: str) -> Machine:
        return await self.store.get_machine(machine_id)

    def reconfigure(
        self, *, audit: AuditLog | None = None, clock: Clock = SYSTEM_CLOCK, **changes: Any
    ) -> None:
        """The gateway composed again on the same store and fakes, with ``changes`` to its
        settings (as a gateway restarted with other ``FLEET_`` variables), recording its calls
        into ``audit`` if given, its rules on ``clock``."""
        self.settings = msgspec.structs.replace(self.settings, **changes)
        self.api = gateway_of(self.settings, self.store, self.bus, self.daemons, self.provider,
                              self.box, self.provisioner, audit, clock)  # fmt: skip
        self.dispatcher = self.api.dispatcher

    def gateway_resolving(self, resolve_caller: CallerResolver) -> Gateway:
        """The world's gateway composed again, its bearer secrets resolved by
        ``resolve_caller`` (a test's own callers): its HTTP app's parts."""
        return gateway_of(self.settings, self.store, self.bus, self.daemons, self.provider,
                          self.box, self.provisioner, resolve_caller=resolve_caller)  # fmt: skip

    async def instance(self, name: str = "demo") -> Instance:
        return await self.store.create_instance(name)

    async def ready_machine(self, instance_id: str | None = None) -> Machine:
        """A machine taken through the whole pipeline (machines.create, then settle)."""
        if instance_id is None:
            instance_id = (await self.instance()).id
        created = await self.rpc("machines.create", {"instanceId": instance_id})
        await self.bus.settle()
        machine = await self.machine(created["id"])
        assert machine.status == "ready", machine.status_reason
        return machine


@pytest.fixture
def world(settings: Settings, store: Store, bus: FakeBus) -> World:
    return make_world(settings, store, bus)


def make_world(settings: Settings, store: Store, bus: FakeBus, **collaborators: Any) -> World:
    """The world on these fakes; ``collaborators``: more of the provisioner's."""
    daemons = FakeDaemons()
    provider = FakeProvider(bus=bus, daemons=daemons)
    daemons.on_stop = provider.report_stopping
    box = SecretBox(settings.secret_key)
    collaborators.setdefault("daemons", daemons)
    provisioner = make_provisioner(store=store, bus=bus, providers={provider.name: provider},
                                   box=box, settings=settings, **collaborators)  # fmt: skip
    setup = setup_pusher(store=store, bus=bus, daemons=daemons, settings=settings)
    prober = make_prober(store=store, bus=bus, daemons=daemons, settings=settings)
    for group in (*provisioner.handlers, *setup.handlers, *prober.handlers):
        bus.attach(group)
    api = gateway_of(settings, store, bus, daemons, provider, box, provisioner)
    return World(settings, store, bus, daemons, provider, box, provisioner, setup, prober, api,
                 api.dispatcher)  # fmt: skip


def gateway_of(
    settings: Settings, store: Store, bus: FakeBus, daemons: FakeDaemons, provider: FakeProvider,
    box: SecretBox, provisioner: Provisioner, audit: AuditLog | None = None,
    clock: Clock = SYSTEM_CLOCK, resolve_caller: CallerResolver | None = None,
) -> Gateway:  # fmt: skip
    """The gateway composed as its __main__ composes it, on the world's fakes."""
    return compose(store=store, bus=bus, daemons=daemons, box=box,
                   settings=settings, resolve_caller=resolve_caller,
                   hosts=InProcessHosts(HostMethods(
                       store=store, settings=settings,
                       providers={provider.name: provider},
                       builds=EnvironmentBuilds(store, settings, no_engine, SharedBuilds()),
                       disk=provisioner.machines.disk)),
                   platform_sha=PLATFORM_SHA,
                   code=FakeHistory(PLATFORM_SHA, HISTORY),
                   repo_check=FakeRepoCheck(), audit=audit, clock=clock)  # fmt: skip


@pytest.fixture
def gateway(world: World) -> InMemoryGateway:
    """The world's gateway as its clients reach it: bearer secrets resolved as ``POST /rpc``
    resolves them, calls handled by its dispatcher (``tests/fakes/client.py``)."""
    return InMemoryGateway(world.dispatcher, world.store, world.settings)


@pytest.fixture
async def fleet(gateway: InMemoryGateway) -> AsyncIterator[FleetClient]:
    """A ``FleetClient`` holding the operator's admin token, on the world's gateway."""
    async with gateway.client() as client:
        yield client
