"""The gateway's one composition root: every part of the gateway (what serves its methods and
what its HTTP app routes to), built once, each given its collaborators; nothing is set on an
object after it is made.

`compose` is what ``services.gateway.__main__`` and the in-memory tests call with the process's
connections (store, bus, daemon client, audit log, OpenID client). Its result holds each part by
the name the rest of the gateway (the HTTP app, the tests) reaches it by, and the dispatcher
whose routes are the handlers of every part (``Router.handles_any``): a new ops object with
``@handles`` methods is routed by being a part. ``make_app`` only routes requests to the parts.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any

from base.clock import SYSTEM_CLOCK, Clock
from contracts.gateway import rpc as g
from contracts.rpc.jsonrpc import Dispatcher, Limits, Router
from controlplane.bus import Bus
from controlplane.calls.daemon_client import DaemonClient, MachineKeys
from controlplane.failover import unavailable
from controlplane.policy import CodeVersions, NameLookups
from controlplane.process.metrics import Metrics
from controlplane.security.crypto import SecretBox
from controlplane.security.tokens import TokenStore
from controlplane.settings import Settings
from controlplane.store import Store
from environments.hook import on_attach
from environments.repo_check import GitRepoCheck, RepoCheck
from services.gateway.auth import (
    Access,
    AuditLog,
    BadSecrets,
    Caller,
    CallerResolver,
    CallLimits,
    EventTickets,
    audited,
    caller_resolver,
    scoped,
)
from services.gateway.console import OidcClient, SignIn, WebSessions
from services.gateway.e2b import E2bFront
from services.gateway.mcp import McpEndpoint
from services.gateway.rpc import (
    CodemodeOps,
    CodeOps,
    DaemonCalls,
    DesktopOps,
    EnvBuildOps,
    EnvironmentOps,
    ForkOps,
    GatewayApi,
    HostCalls,
    HostOps,
    LimitsOps,
    MachineOps,
    MetricsOps,
    NetworkOps,
    PeopleOps,
    PortOps,
    RuntimeOps,
    SecretOps,
    StopOps,
    Waker,
    WebhookMakers,
    WebhookOps,
    host_passing,
)
from services.gateway.streams import (
    ByteStreamOpener,
    ByteStreamSlots,
    EventHub,
    EventsContext,
    ExecStreamOps,
    RevocationTicker,
    SessionOps,
    StreamRules,
    Tunnels,
    WatchOps,
)


@dataclass(frozen=True)
class Gateway:
    """Every part of the gateway; every part with ``@handles`` methods is routed, and the HTTP
    app (``services.gateway.http.make_app``) routes requests to the others."""

    settings: Settings
    store: Store
    bus: Bus
    access: Access
    limits: CallLimits
    tokens: TokenStore
    tickets: EventTickets
    #: The gateway's one path to a daemon for a caller.
    calls: DaemonCalls
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
    #: machines.metrics (what machines use; ``metrics`` is the gateway's own Prometheus).
    usage: MetricsOps
    ports: PortOps
    people: PeopleOps
    codemode: CodemodeOps
    code: CodeOps
    desktop: DesktopOps
    secrets: SecretOps
    webhooks: WebhookOps
    #: The names of webhook URLs, looked up on the event loop (a silent server holds nothing).
    name_lookups: NameLookups
    #: Disables the endpoints whose makers no longer may manage them.
    webhook_makers: WebhookMakers
    #: E2B's APIs, served on a listener of their own (FLEET_E2B_PORT).
    e2b: E2bFront
    #: None: nothing is recorded (and audit.list answers Unavailable).
    audit: AuditLog | None
    #: The HTTP side: who a bearer secret belongs to, browsers' sessions and their sign-in,
    #: the bad secrets of each address, the rules of a streamed answer, tunnels and previews.
    resolve_caller: CallerResolver
    web_sessions: WebSessions
    sign_in: SignIn
    guesses: BadSecrets
    stream_rules: StreamRules
    tunnels: Tunnels
    #: GET /events: the one subscription to machine events, and what each stream uses.
    hub: EventHub
    events: EventsContext
    #: Ends what a revoked or demoted caller holds open (entered with the hub).
    revocation: RevocationTicker
    mcp: McpEndpoint
    #: Served as GET /metrics (None: no such route).
    metrics: Metrics | None

    @cached_property
    def dispatcher(self) -> Dispatcher[Caller]:
        """Every gateway method's handler. The routes follow from the parts: each that has
        handlers, once; no list to keep."""
        parts = (getattr(self, f.name) for f in fields(self))
        owners = {id(p): p for p in parts if Router.handles_any(p)}
        return _dispatcher(list(owners.values()), self.calls, self.core.host_control,
                           self.limits, self.settings, self.audit)  # fmt: skip

    def resources(self) -> tuple[AbstractAsyncContextManager[object], ...]:
        """The parts to enter before the gateway serves, in order (left in reverse)."""
        return (self.hub, self.mcp, self.revocation, self.name_lookups, self.webhook_makers,
                self.e2b.ends, self.e2b.watches)  # fmt: skip


@dataclass(frozen=True)
class _Made:
    """The parts several others are made with."""

    access: Access
    calls: DaemonCalls
    tokens: TokenStore
    tickets: EventTickets
    limits: CallLimits
    byte_streams: ByteStreamOpener
    waker: Waker


def compose(
    *,
    store: Store,
    bus: Bus,
    daemons: DaemonClient,
    box: SecretBox,
    hosts: HostCalls,
    settings: Settings,
    platform_sha: str | None = None,
    keys: MachineKeys | None = None,
    code: CodeVersions | None = None,
    audit: AuditLog | None = None,
    clock: Clock = SYSTEM_CLOCK,
    repo_check: RepoCheck | None = None,
    oidc: OidcClient | None = None,
    metrics: Metrics | None = None,
    resolve_caller: CallerResolver | None = None,
) -> Gateway:
    """``audit`` None: nothing is recorded (and audit.list answers Unavailable). Without the
    platform's code repo (``code``), only "current" (the same SHA) can be told; without
    ``oidc``, sign-in is not configured; ``resolve_caller``: by default the admin token's and
    the store's tokens (a test names its own callers)."""
    s = settings
    made = _first_parts(store, bus, daemons, hosts, s, code or CodeVersions(None, platform_sha),
                        audit, clock)  # fmt: skip
    runtimes = RuntimeOps(store=store, settings=s, access=made.access)
    forks = ForkOps(store=store, bus=bus, access=made.access, hosts=hosts,
                    max_snapshots=s.max_snapshots, daemons=daemons, clock=clock)  # fmt: skip
    people = PeopleOps(store, made.tokens, s)
    api = GatewayApi(
        store=store, bus=bus, daemons=daemons, calls=made.calls, box=box, settings=s,
        access=made.access, tokens=made.tokens, tickets=made.tickets, people=people,
        runtimes=runtimes, forks=forks,
        host_control=hosts, platform_sha=platform_sha, audit=audit, clock=clock,
        repo_check=repo_check or GitRepoCheck(s.repo_check_timeout_s, s.upstream_cas),
    )  # fmt: skip
    ops = MachineOps(store=store, daemons=daemons, settings=s, hosts=hosts, calls=made.calls,
                     platform_sha=platform_sha, access=made.access, keys=keys)  # fmt: skip
    gateway: Gateway | None = None

    async def tool_call(body: bytes, caller: Caller) -> bytes | None:
        """A codemode run's tool call, through the gateway's dispatcher as ``POST /rpc``."""
        assert gateway is not None  # made below, before any run can start
        return await gateway.dispatcher.handle(body, caller)

    codemode = CodemodeOps(bus=bus, store=store, box=box, access=made.access, dispatch=tool_call)
    lookups = NameLookups()
    resolve = resolve_caller or caller_resolver(s.admin_token, made.tokens, store,
                                                s.revocation_round_s, clock)  # fmt: skip
    http = _http_parts(store, bus, s, made, resolve, codemode, oidc, audit, clock)
    gateway = Gateway(
        settings=s, store=store, bus=bus, audit=audit, access=made.access, limits=made.limits,
        tokens=made.tokens, tickets=made.tickets, calls=made.calls, core=api, ops=ops,
        runtimes=runtimes, forks=forks, people=people, byte_streams=made.byte_streams,
        codemode=codemode,
        watches=WatchOps(opener=made.byte_streams, store=store),
        usage=MetricsOps(store=store, access=made.access, sample_s=s.metrics_sample_s,
                         clock=clock),
        name_lookups=lookups,
        webhook_makers=WebhookMakers(store, s.webhook_makers_round_s, audit, clock),
        e2b=E2bFront(settings=s, store=store, box=box, dispatch=tool_call, resolve=resolve,
                     waker=made.waker, opener=made.byte_streams, tunnels=http["tunnels"]),
        **_area_parts(store, bus, daemons, box, hosts, s, made, api, lookups),
        **http,
        metrics=metrics,
    )  # fmt: skip
    gateway.dispatcher  # noqa: B018 - routed now: a handler missing is an error at start
    return gateway


def _first_parts(store: Store, bus: Bus, daemons: DaemonClient, hosts: HostCalls,
                 s: Settings, code: CodeVersions, audit: AuditLog | None,
                 clock: Clock) -> _Made:  # fmt: skip
    waker = Waker(store=store, bus=bus, daemons=daemons, enabled=s.wake_on_access,
                  timeout_s=s.wake_timeout_s, clock=clock)  # fmt: skip
    access = Access(store, code, s.activity_write_s, waker=waker)
    opener = ByteStreamOpener(
        slots=ByteStreamSlots(s.streams_per_token), access=access, daemons=daemons,
        nc=lambda: bus.nc, audit=audit,
    )  # fmt: skip
    return _Made(access=access, calls=DaemonCalls(access=access, daemons=daemons),
                 tokens=TokenStore(store), tickets=EventTickets(store, s.events_ticket_ttl_s),
                 limits=CallLimits(s, clock), byte_streams=opener, waker=waker)  # fmt: skip


def _area_parts(store: Store, bus: Bus, daemons: DaemonClient, box: SecretBox,
                hosts: HostCalls, s: Settings, made: _Made, api: GatewayApi,
                lookups: NameLookups) -> dict[str, Any]:  # fmt: skip
    """The ops objects of the gateway's areas, by their fields' names in ``Gateway``."""
    ports = PortOps(access=made.access, daemons=daemons, store=store, settings=s)
    return {
        "stops": StopOps(store=store, bus=bus, access=made.access),
        "machine_limits": LimitsOps(store, s),
        "environments": EnvironmentOps(store, made.access, hosts),
        "env_builds": EnvBuildOps(made.access, hosts),
        "network": NetworkOps(store, hosts),
        "hosts": HostOps(store, s, api.rebuild_instance),
        "exec_streams": ExecStreamOps(daemons=daemons, access=made.access, bus=bus),
        "sessions": SessionOps(call=made.calls, opener=made.byte_streams,
                               attached=lambda mid: on_attach(store, bus, s, daemons, mid)),
        "ports": ports,
        "code": CodeOps(access=made.access, daemons=daemons, bus=bus, calls=made.calls),
        "desktop": DesktopOps(access=made.access, daemons=daemons, calls=made.calls, ports=ports),
        "secrets": SecretOps(store=store, bus=bus, box=box, access=made.access),
        "webhooks": WebhookOps(store=store, box=box, access=made.access, settings=s,
                               resolve=lookups),
    }  # fmt: skip


def _http_parts(store: Store, bus: Bus, s: Settings, made: _Made, resolve: CallerResolver,
                codemode: CodemodeOps, oidc: OidcClient | None, audit: AuditLog | None,
                clock: Clock) -> dict[str, Any]:  # fmt: skip
    """The parts the HTTP app routes to, by their fields' names in ``Gateway``."""
    web_sessions = WebSessions(store, s, clock)
    guesses = BadSecrets(s.rate_unauthenticated_per_min, clock=clock.monotonic)
    slots = made.byte_streams.slots
    hub = EventHub(bus, store, max_per_token=s.events_max_per_token,
                   max_streams=s.events_max_streams)  # fmt: skip
    return {
        "resolve_caller": resolve,
        "web_sessions": web_sessions,
        "sign_in": SignIn(store, s, oidc, web_sessions, made.tokens),
        "guesses": guesses,
        "stream_rules": StreamRules(made.limits, slots, s.client_write_timeout_s, clock),
        "tunnels": Tunnels(opener=made.byte_streams, resolve=resolve, guesses=guesses, clock=clock),
        "hub": hub,
        "events": EventsContext(bus, store, hub, asyncio.Semaphore(s.events_max_replays), clock),
        "revocation": RevocationTicker(store, hub, slots, s.revocation_round_s, audit, clock),
        "mcp": McpEndpoint(codemode, s.max_body_bytes),
    }


def _dispatcher(
    owners: list[object],
    calls: DaemonCalls,
    hosts: HostCalls,
    limits: CallLimits,
    s: Settings,
    audit: AuditLog | None,
) -> Dispatcher[Caller]:
    """Every gateway method's handler (a part's, or a pass-through's to a daemon or a host
    method), each
    rate-limited as its spec's budget says, run as its caller doing its scope, and audited
    (mypy checks each handler against its spec; the dispatcher, that every method of the
    table has one)."""
    router = Router[Caller]()
    router.collect(*owners)
    for spec in g.GATEWAY_METHODS:
        if spec.passes is not None:
            router.register(spec, host_passing(spec, calls.access, hosts) if spec.passes.host
                            else calls.passing(spec))  # fmt: skip
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
