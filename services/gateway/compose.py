"""The gateway's one composition root: every object that serves its methods, built once, each
given its collaborators; nothing is set on an object after it is made.

`compose` is what ``services.gateway.__main__`` and the in-memory tests call with the process's
connections. Its result holds each part by the name the rest of the gateway (the HTTP app, MCP,
the tests) reaches it by, and the dispatcher whose routes are the handlers of every part
(``Router.handles_any``): a new ops object with ``@handles`` methods is routed by being a part.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property

from base.clock import SYSTEM_CLOCK, Clock
from contracts import gateway_rpc as g
from contracts.jsonrpc import Dispatcher, Limits, Router
from controlplane.bus import Bus
from controlplane.crypto import SecretBox
from controlplane.daemon_client import DaemonClient, MachineKeys
from controlplane.failover import unavailable
from controlplane.settings import Settings
from controlplane.store import Store
from controlplane.tokens import TokenStore
from environments.hook import on_attach
from environments.repo_check import GitRepoCheck, RepoCheck
from providers.code_status import CodeVersions
from services.gateway.access import Access, Caller, scoped
from services.gateway.api import GatewayApi
from services.gateway.audit_log import AuditLog, audited
from services.gateway.byte_stream_open import ByteStreamOpener
from services.gateway.byte_stream_slots import ByteStreamSlots
from services.gateway.code_ops import CodeOps
from services.gateway.codemode_ops import CodemodeOps
from services.gateway.env_build_ops import EnvBuildOps
from services.gateway.environment_ops import EnvironmentOps
from services.gateway.exec_stream import ExecStreamOps
from services.gateway.fork_ops import ForkOps
from services.gateway.host_control import HostControl
from services.gateway.hosts_ops import HostOps
from services.gateway.limits_ops import LimitsOps
from services.gateway.metrics_ops import MetricsOps
from services.gateway.network_ops import NetworkOps
from services.gateway.ops import MachineOps
from services.gateway.people_ops import PeopleOps
from services.gateway.ports_ops import PortOps
from services.gateway.rate_limits import CallLimits
from services.gateway.runtime_ops import RuntimeOps
from services.gateway.secrets_ops import SecretOps
from services.gateway.sessions_ops import SessionOps
from services.gateway.stop_ops import StopOps
from services.gateway.tickets import EventTickets
from services.gateway.wake import Waker
from services.gateway.watch_ops import WatchOps


@dataclass(frozen=True)
class Gateway:
    """What serves the gateway's methods; every part with ``@handles`` methods is routed."""

    settings: Settings
    access: Access
    limits: CallLimits
    tokens: TokenStore
    tickets: EventTickets
    #: The methods of instances, env, repos, tokens, events, audit and machines themselves.
    core: GatewayApi
    ops: MachineOps
    stops: StopOps
    runtimes: RuntimeOps
    forks: ForkOps
    machine_limits: LimitsOps
    environments: EnvironmentOps
    env_builds: EnvBuildOps
    network: NetworkOps
    hosts: HostOps
    exec_streams: ExecStreamOps
    #: The one path a byte stream (terminal, file, tunnel, preview) is opened on.
    byte_streams: ByteStreamOpener
    sessions: SessionOps
    watches: WatchOps
    metrics: MetricsOps
    ports: PortOps
    people: PeopleOps
    codemode: CodemodeOps
    code: CodeOps
    secrets: SecretOps
    #: None: nothing is recorded (and audit.list answers Unavailable).
    audit: AuditLog | None

    @cached_property
    def dispatcher(self) -> Dispatcher[Caller]:
        """Every gateway method's handler. The routes follow from the parts: each that has
        handlers, once; no list to keep."""
        parts = (getattr(self, f.name) for f in fields(self))
        owners = {id(p): p for p in parts if Router.handles_any(p)}
        return _dispatcher(list(owners.values()), self.limits, self.settings, self.audit)


def compose(
    *,
    store: Store,
    bus: Bus,
    daemons: DaemonClient,
    box: SecretBox,
    hosts: HostControl,
    settings: Settings | None = None,
    platform_sha: str | None = None,
    keys: MachineKeys | None = None,
    code: CodeVersions | None = None,
    audit: AuditLog | None = None,
    clock: Clock = SYSTEM_CLOCK,
    repo_check: RepoCheck | None = None,
) -> Gateway:
    """``audit`` None: nothing is recorded (and audit.list answers Unavailable). Without the
    platform's code repo (``code``), only "current" (the same SHA) can be told."""
    s = settings or Settings()
    waker = Waker(store=store, bus=bus, daemons=daemons, enabled=s.wake_on_access,
                  timeout_s=s.wake_timeout_s, clock=clock)  # fmt: skip
    access = Access(store, code or CodeVersions(None, platform_sha), s.activity_write_s,
                    waker=waker)  # fmt: skip
    tokens, tickets = TokenStore(store), EventTickets(store, s.events_ticket_ttl_s)
    runtimes = RuntimeOps(store=store, settings=s, access=access)
    forks = ForkOps(store=store, bus=bus, access=access, hosts=hosts,
                    max_snapshots=s.max_snapshots, daemons=daemons, clock=clock)  # fmt: skip
    people = PeopleOps(store, tokens, s)
    api = GatewayApi(
        store=store, bus=bus, daemons=daemons, box=box, settings=s, access=access,
        tokens=tokens, tickets=tickets, people=people, runtimes=runtimes, forks=forks,
        host_control=hosts, platform_sha=platform_sha, audit=audit, clock=clock,
        repo_check=repo_check or GitRepoCheck(s.repo_check_timeout_s, s.upstream_cas),
    )  # fmt: skip
    ops = MachineOps(store=store, daemons=daemons, settings=s, hosts=hosts,
                     platform_sha=platform_sha, access=access, keys=keys)  # fmt: skip
    byte_streams = ByteStreamOpener(
        slots=ByteStreamSlots(s.streams_per_token), access=access, daemons=daemons,
        nc=lambda: bus.nc, audit=audit,
    )  # fmt: skip
    gateway: Gateway | None = None

    async def tool_call(body: bytes, caller: Caller) -> bytes | None:
        """A codemode run's tool call, through the gateway's dispatcher as ``POST /rpc``."""
        assert gateway is not None  # made below, before any run can start
        return await gateway.dispatcher.handle(body, caller)

    gateway = Gateway(
        settings=s, audit=audit, access=access, limits=CallLimits(s, clock), tokens=tokens,
        tickets=tickets, core=api, ops=ops, runtimes=runtimes, forks=forks, people=people,
        byte_streams=byte_streams,
        stops=StopOps(store=store, bus=bus, access=access),
        machine_limits=LimitsOps(store, s),
        environments=EnvironmentOps(store, access, hosts),
        env_builds=EnvBuildOps(access, hosts),
        network=NetworkOps(store, hosts),
        hosts=HostOps(store, s, api.rebuild_instance),
        exec_streams=ExecStreamOps(daemons=daemons, access=access, bus=bus),
        sessions=SessionOps(
            call=ops._call, opener=byte_streams,
            attached=lambda mid: on_attach(store, bus, s, daemons, mid),
        ),
        watches=WatchOps(opener=byte_streams, store=store),
        metrics=MetricsOps(store=store, access=access, sample_s=s.metrics_sample_s, clock=clock),
        ports=PortOps(access=access, daemons=daemons, store=store, settings=s),
        codemode=CodemodeOps(bus=bus, store=store, box=box, access=access, dispatch=tool_call),
        code=CodeOps(access=access, daemons=daemons, bus=bus),
        secrets=SecretOps(store=store, bus=bus, box=box, access=access),
    )  # fmt: skip
    gateway.dispatcher  # noqa: B018 - routed now: a handler missing is an error at start
    return gateway


def _dispatcher(
    owners: list[object], limits: CallLimits, s: Settings, audit: AuditLog | None
) -> Dispatcher[Caller]:
    """Every gateway method's handler, each rate-limited as its spec's budget says, run as its
    caller doing its scope, and audited (mypy checks each handler against its spec; the
    dispatcher, that every method of the table has one)."""
    router = Router[Caller]()
    router.collect(*owners)
    router = scoped(rated(router, limits))
    if audit is not None:
        router = audited(router, audit)
    size = Limits(s.rpc_max_batch, s.rpc_max_response_bytes, s.rpc_batch_concurrency)
    return Dispatcher(g.GATEWAY_METHODS, router, size, unavailable)


def rated(router: Router[Caller], lim: CallLimits) -> Router[Caller]:
    """The same routes, each whose spec names a ``budget`` refusing a token past it."""
    out = Router[Caller]()
    for route in router.routes.values():
        handler = route.handler
        if route.spec.budget is not None:
            handler = lim.guard(route.spec, handler)
        out.register(route.spec, handler)
    return out
