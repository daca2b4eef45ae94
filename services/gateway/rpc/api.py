"""The gateway's JSON-RPC methods: validated params in, contract results out."""

from __future__ import annotations

from functools import cached_property

import msgspec
import structlog

from base.clock import SYSTEM_CLOCK, Clock
from base.version import package_version
from contracts.bus.events import EnvChanged, MachineArchived, ReposChanged, WakeBy
from contracts.daemon.rpc import (
    EXEC_COMMAND,
    WRITE_FILE,
    ExecCommandParams,
    ExecCommandResult,
    WriteFileParams,
    WriteFileResult,
)
from contracts.errors import Conflict, Forbidden, InvalidParams, Unavailable
from contracts.gateway import rpc as g
from contracts.gateway.audit import AUDIT_LIST, AuditEntries, AuditListParams
from contracts.gateway.rpc import (
    ENV_LIST,
    ENV_SET,
    ENV_UNSET,
    EVENTS_TICKET,
    INSTANCES_CREATE,
    INSTANCES_GET,
    INSTANCES_LIST,
    MACHINES_ARCHIVE,
    MACHINES_CREATE,
    MACHINES_EXEC,
    MACHINES_GET,
    MACHINES_LIST,
    MACHINES_REBUILD,
    MACHINES_WRITE_FILE,
    REPOS_ADD,
    REPOS_LIST,
    REPOS_REMOVE,
    RPC_DISCOVER,
    TOKENS_CREATE,
    TOKENS_LIST,
    TOKENS_REVOKE,
    AddedRepo,
    AddRepoParams,
    CreatedToken,
    CreateInstanceParams,
    CreateMachineParams,
    CreateTokenParams,
    EnvList,
    InstanceList,
    InstanceRef,
    ListEnvParams,
    ListMachinesParams,
    MachineExecParams,
    MachineList,
    MachineRef,
    MachineWriteFileParams,
    RebuildMachineParams,
    Removed,
    RemoveRepoParams,
    RepoList,
    Revoked,
    SetEnvParams,
    TokenList,
    TokenRef,
    UnsetEnvParams,
)
from contracts.host import rpc as h
from contracts.ids import derived_event_id, new_event_id
from contracts.models import (
    EnvScope,
    EnvVar,
    GitCredentials,
    Instance,
    Machine,
    Repo,
    RuntimeChoice,
)
from contracts.rpc.jsonrpc import NoParams, handles
from contracts.rpc.openrpc import OpenRpcDocument, openrpc_document
from contracts.status import TERMINAL, MachineStatus as S
from controlplane import create_once
from controlplane.bus import Bus
from controlplane.calls.daemon_client import EXEC_MARGIN_S, DaemonClient
from controlplane.policy import policy_refusal, remote_host
from controlplane.process.graceful_stop import ask_to_stop
from controlplane.security.crypto import SecretBox
from controlplane.security.tokens import TokenStore
from controlplane.settings import Settings
from controlplane.store import Store
from environments.repo_check import RepoCheck
from services.gateway.auth import Access, AuditLog, Caller, EventTickets, check_local_repo, may_read
from services.gateway.rpc.admission import admitted
from services.gateway.rpc.daemon_calls import DaemonCalls
from services.gateway.rpc.fork import ForkOps, new_machine
from services.gateway.rpc.host_control import HostCalls
from services.gateway.rpc.metrics import with_latest
from services.gateway.rpc.people import PeopleOps, may_see
from services.gateway.rpc.runtime import RuntimeOps, check_root, root_exec

log = structlog.get_logger(__name__)


class GatewayApi:
    def __init__(
        self,
        *,
        store: Store,
        bus: Bus,
        daemons: DaemonClient,
        calls: DaemonCalls,
        box: SecretBox,
        settings: Settings,
        access: Access,
        tokens: TokenStore,
        tickets: EventTickets,
        people: PeopleOps,
        runtimes: RuntimeOps,
        forks: ForkOps,
        host_control: HostCalls,
        repo_check: RepoCheck,
        platform_sha: str | None = None,
        audit: AuditLog | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """Its collaborators, made once by the gateway's composition root
        (services/gateway/compose.py). ``audit`` None: nothing is recorded (and audit.list
        answers Unavailable). ``clock``: how old a machine's latest sample is."""
        self.store = store
        self.bus = bus
        self.daemons = daemons
        self.calls = calls
        self.box = box
        self.settings = settings
        self.access = access
        self.tokens = tokens
        self.tickets = tickets
        self.people = people
        self.runtimes = runtimes
        self.forks = forks
        self.host_control = host_control
        self.repo_check = repo_check
        self.platform_sha = platform_sha
        self.audit = audit
        self.clock = clock

    @cached_property
    def _openrpc(self) -> OpenRpcDocument:
        # Built on the first rpc.discover, not with the gateway: it costs tens of
        # milliseconds of schema generation that most gateways never need.
        return openrpc_document(
            g.GATEWAY_METHODS, title="fleetd gateway", version=package_version()
        )

    # --- instances --------------------------------------------------------------------------
    @handles(INSTANCES_CREATE)
    async def instances_create(self, p: CreateInstanceParams, c: Caller) -> Instance:
        c.require(None)
        inst = await self.store.create_instance(p.name)
        if c.user_id is not None:  # its maker owns it
            await self.store.users.set_member(inst.id, c.user_id, "owner")
        return inst

    @handles(INSTANCES_GET)
    async def instances_get(self, p: InstanceRef, c: Caller) -> Instance:
        c.require(p.instance_id)
        return await self.store.get_instance(p.instance_id)

    @handles(INSTANCES_LIST)
    async def instances_list(self, p: NoParams, c: Caller) -> InstanceList:
        instances = await self.store.list_instances()
        return InstanceList(instances=[i for i in instances if c.may(i.id)])

    # --- env --------------------------------------------------------------------------------
    @handles(ENV_SET)
    async def env_set(self, p: SetEnvParams, c: Caller) -> EnvVar:
        await self.access.instance_exists(c, p.instance_id)
        await self.store.set_env(p.instance_id, p.name, p.value)
        await self._env_changed(p.instance_id, p.name)
        scope: EnvScope = "platform" if p.instance_id is None else "instance"
        return EnvVar(name=p.name, value=p.value, scope=scope)

    @handles(ENV_UNSET)
    async def env_unset(self, p: UnsetEnvParams, c: Caller) -> Removed:
        await self.access.instance_exists(c, p.instance_id)
        removed = await self.store.unset_env(p.instance_id, p.name)
        if removed:
            await self._env_changed(p.instance_id, p.name)
        return Removed(removed=removed)

    async def _env_changed(self, instance_id: str | None, name: str) -> None:
        """Running machines follow: the setup pusher pushes the new .env (after the store
        write, so whoever handles the event reads the new value)."""
        await self.bus.publish(
            EnvChanged(event_id=new_event_id(), instance_id=instance_id, name=name)
        )

    @handles(ENV_LIST)
    async def env_list(self, p: ListEnvParams, c: Caller) -> EnvList:
        await self.access.instance_exists(c, p.instance_id)
        return EnvList(vars=await self.store.list_env(p.instance_id))

    # --- repos ------------------------------------------------------------------------------
    @handles(REPOS_ADD)
    async def repos_add(self, p: AddRepoParams, c: Caller) -> AddedRepo:
        """Stored only once git on the platform has seen the repo and branch, or could not
        ask (a warning: environments/repo_check.py); a warning too when the instance's network
        policy refuses its host, which its machines' clones would meet."""
        await self.access.instance_exists(c, p.instance_id)
        check_local_repo(p.url, c, self.settings.data_path)
        creds = None if p.token is None else GitCredentials(username=p.username, token=p.token)
        said = [await self.repo_check(p.url, p.branch, creds), await self._refused(p)]
        warning = "; ".join(w for w in said if w) or None
        repo = Repo(url=p.url, branch=p.branch, path=p.path, has_credentials=creds is not None)
        sealed = None if creds is None else self.box.encrypt(msgspec.json.encode(creds).decode())
        await self.store.set_repo_secret(p.instance_id, p.path, sealed)
        await self.store.add_repo(p.instance_id, repo)
        await self._repos_changed(p.instance_id, p.path)
        return AddedRepo(**msgspec.structs.asdict(repo), warning=warning)

    async def _refused(self, p: AddRepoParams) -> str | None:
        at = remote_host(p.url)
        if at is None:
            return None
        policy = await self.store.instance_settings.egress(p.instance_id)
        refused = policy_refusal(p.instance_id, policy, *at, done=False)
        return None if refused is None else f"its machines cannot clone it: {refused}"

    @handles(REPOS_REMOVE)
    async def repos_remove(self, p: RemoveRepoParams, c: Caller) -> Removed:
        await self.access.instance_exists(c, p.instance_id)
        removed = await self.store.remove_repo(p.instance_id, p.path)
        if removed:
            await self._repos_changed(p.instance_id, p.path)
        return Removed(removed=removed)

    async def _repos_changed(self, instance_id: str, path: str) -> None:
        await self.bus.publish(
            ReposChanged(event_id=new_event_id(), instance_id=instance_id, path=path)
        )

    @handles(REPOS_LIST)
    async def repos_list(self, p: InstanceRef, c: Caller) -> RepoList:
        await self.access.instance_exists(c, p.instance_id)
        return RepoList(repos=await self.store.list_repos(p.instance_id))

    # --- machines ---------------------------------------------------------------------------
    @handles(MACHINES_CREATE)
    async def machines_create(self, p: CreateMachineParams, c: Caller) -> Machine:
        c.require(p.instance_id)
        if p.provider == "swarm" and not c.admin:  # a load-test provider: not isolated
            raise Forbidden("the swarm provider is for load tests: admin tokens only")
        if p.from_snapshot is not None:
            return await self._from_snapshot(p, c)
        provider = p.provider or self.settings.default_provider
        runtime = await self.runtimes.for_new(p.instance_id, provider, p.runtime)
        once = create_once.once_of(
            g.MACHINES_CREATE.name, p.idempotency_key, c.token_id, self.settings.idempotency_ttl_s,
            p.instance_id, provider,
            *([] if p.runtime is None else [p.runtime]),
        )  # fmt: skip
        if once is not None and (got := await self.store.creates.lookup(once)) is not None:
            return await create_once.repeat(self.store, self.bus, once, got)  # a retry
        inst = await self.store.get_instance(p.instance_id)
        if inst.current_machine_id:
            current = await self.store.get_machine(inst.current_machine_id)
            if current.status not in TERMINAL:
                # A concurrent call with this key may have made it since our lookup.
                if once is not None and (got := await self.store.creates.lookup(once)):
                    return await create_once.repeat(self.store, self.bus, once, got)
                raise Conflict(
                    f"instance {inst.id} already has machine {current.id} "
                    f"({current.status.value}); use {g.MACHINES_REBUILD.name} to replace it",
                    data={"machineId": current.id},
                )
        async with admitted(self.store, inst.id):
            if once is not None:
                return await create_once.make(
                    self.store, self.bus, inst.id, provider, once, runtime=runtime
                )
            return await self._create_machine(inst.id, provider, runtime)

    async def _from_snapshot(self, p: CreateMachineParams, c: Caller) -> Machine:
        """One more machine of the instance, with a copy of the snapshot's home (as forks are:
        the instance's current machine stays)."""
        if p.idempotency_key is not None:
            raise InvalidParams("fromSnapshot takes no idempotencyKey", field="$.fromSnapshot")
        snapshot = await self.forks.snapshot_of(c, p.from_snapshot or "", p.instance_id)
        async with admitted(self.store, p.instance_id):
            return await self.forks.made_from(snapshot, p.provider)

    async def _create_machine(
        self, instance_id: str, provider: str, runtime: RuntimeChoice
    ) -> Machine:
        return await new_machine(self.store, self.bus, instance_id, provider, runtime=runtime)

    @handles(MACHINES_GET)
    async def machines_get(self, p: MachineRef, c: Caller) -> Machine:
        machine = await self.access.machine(c, p.machine_id)
        return (await with_latest(self.store, [machine], self.clock.now()))[0]

    @handles(MACHINES_LIST)
    async def machines_list(self, p: ListMachinesParams, c: Caller) -> MachineList:
        if p.instance_id is not None:
            await self.access.instance_exists(c, p.instance_id)
        machines = [await self.access.versioned(m) for m in await self.store.list_machines(
            p.instance_id) if c.may(m.instance_id)]  # fmt: skip
        return MachineList(machines=await with_latest(self.store, machines, self.clock.now()))

    @handles(MACHINES_ARCHIVE)
    async def machines_archive(self, p: MachineRef, c: Caller) -> Machine:
        await self.access.machine(c, p.machine_id)
        return await self._archive(p.machine_id, "archived by request")

    async def _archive(self, machine_id: str, reason: str, event_id: str | None = None) -> Machine:
        await self.store.get_machine(machine_id)  # NotFound first
        t = await self.store.transition(machine_id, S.ARCHIVING, reason)
        if t.moved:
            # Before machine.archived, on which the provisioner revokes the machine's access:
            # so the daemon can still report ``stopping`` and exit cleanly. Bounded, and at
            # once when no daemon answers.
            await ask_to_stop(
                self.bus.nc, self.daemons, machine_id, wait_s=self.settings.stop_wait_s
            )
        if t.accepted:
            # Also on a repeat: a gateway that died between the status and this publish left
            # the machine unrevoked, and archiving it again must finish the job (the
            # provisioner's revoke and stop are idempotent).
            event_id = event_id or new_event_id()
            await self.bus.publish(
                MachineArchived(event_id=event_id, machine_id=machine_id, reason=reason)
            )
        return await self.store.get_machine(machine_id)

    @handles(MACHINES_REBUILD)
    async def machines_rebuild(self, p: RebuildMachineParams, c: Caller) -> Machine:
        c.require(p.instance_id)
        inst = await self.store.get_instance(p.instance_id)
        provider: str = self.settings.default_provider
        if inst.current_machine_id:
            provider = (await self.store.get_machine(inst.current_machine_id)).provider
        runtime = await self.runtimes.for_new(inst.id, provider, None)
        once = create_once.once_of(
            g.MACHINES_REBUILD.name, p.idempotency_key, c.token_id,
            self.settings.idempotency_ttl_s, inst.id,
        )  # fmt: skip
        # The machine it replaces is archived, so it does not count; the new one does. Its
        # archive is inside: between it and the new record, the place must stay taken.
        async with admitted(self.store, inst.id, replacing=inst.current_machine_id):
            if once is not None:
                return await create_once.make(
                    self.store, self.bus, inst.id, provider, once, self._replaced, runtime
                )
            if inst.current_machine_id:
                await self._archive(inst.current_machine_id, "replaced by a rebuild")
            return await self._create_machine(inst.id, provider, runtime)

    async def rebuild_instance(self, instance_id: str, c: Caller) -> Machine:
        """``machines.rebuild`` of ``instance_id`` (hosts.drain with rebuild)."""
        return await self.machines_rebuild(RebuildMachineParams(instance_id=instance_id), c)

    async def _replaced(self, machine_id: str) -> Machine:
        """A keyed rebuild's archive of the machine it replaced: its event's id is derived, so
        the retries that archive it again add no event inside the duplicate window."""
        event_id = derived_event_id(machine_id, "machine.archived")
        return await self._archive(machine_id, "replaced by a rebuild", event_id)

    @handles(MACHINES_EXEC)
    async def machines_exec(self, p: MachineExecParams, c: Caller) -> ExecCommandResult:
        if p.user == "root":
            machine = await self.access.live_machine(c, p.machine_id, wake=WakeBy.EXEC)
            check_root(machine)
            return await self.host_control(h.EXEC_AS_ROOT, root_exec(p), machine=machine)
        params = ExecCommandParams(command=p.command, timeout_s=p.timeout_s, cwd=p.cwd, env=p.env)
        return await self.calls(c, p.machine_id, EXEC_COMMAND, params, wake=WakeBy.EXEC,
                                timeout_s=p.timeout_s + EXEC_MARGIN_S)  # fmt: skip

    @handles(MACHINES_WRITE_FILE)
    async def machines_write_file(self, p: MachineWriteFileParams, c: Caller) -> WriteFileResult:
        params = WriteFileParams(path=p.path, content=p.content, mode=p.mode)
        return await self.calls(c, p.machine_id, WRITE_FILE, params, wake=WakeBy.FILES)

    # --- access tokens ----------------------------------------------------------------------
    @handles(TOKENS_CREATE)
    async def tokens_create(self, p: CreateTokenParams, c: Caller) -> CreatedToken:
        return await self.people.tokens_create(p, c)

    @handles(TOKENS_LIST)
    async def tokens_list(self, p: NoParams, c: Caller) -> TokenList:
        return TokenList(tokens=[t for t in await self.tokens.list() if may_see(c, t)])

    @handles(TOKENS_REVOKE)
    async def tokens_revoke(self, p: TokenRef, c: Caller) -> Revoked:
        token = await self.tokens.get(p.id)
        if not may_see(c, token):
            raise Forbidden(f"this caller may not revoke token {p.id}")
        revoked = await self.tokens.revoke(p.id)
        log.info("token.revoked", token_id=p.id, by=c.token_id)
        return Revoked(revoked=revoked)

    @handles(AUDIT_LIST)
    async def audit_list(self, p: AuditListParams, c: Caller) -> AuditEntries:
        may_read(c)
        if self.audit is None:
            raise Unavailable("this gateway keeps no audit log")
        return await self.audit.entries(p)

    @handles(RPC_DISCOVER)
    async def rpc_discover(self, p: NoParams, c: Caller) -> OpenRpcDocument:
        return self._openrpc

    @handles(EVENTS_TICKET)
    async def events_ticket(self, p: NoParams, c: Caller) -> g.EventsTicket:
        ticket = await self.tickets.issue(c)
        return g.EventsTicket(ticket=ticket, expires_in_s=self.tickets.ttl_s)
