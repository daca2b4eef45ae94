"""The gateway's JSON-RPC methods (``POST /rpc``)."""

from __future__ import annotations

from typing import Final

from contracts.daemon import rpc as d
from contracts.daemon.rpc import (
    ExecCommandResult,
    ProcessInfo,
    ProcessList,
    ProcessLogs,
    WriteFileResult,
)
from contracts.errors import (
    BadPath,
    BranchNotFound,
    Conflict,
    DaemonTimeout,
    DaemonUnavailable,
    FleetError,
    Forbidden,
    HostUnavailable,
    IdempotencyKeyReused,
    InvalidParams,
    MachineStopped,
    NotFound,
    NotSupported,
    ProviderError,
    RepoNotFound,
    RunningMachinesLimit,
    ToolError,
)
from contracts.gateway import wire_names
from contracts.gateway.audit import AUDIT_METHODS
from contracts.gateway.code import CODE_METHODS
from contracts.gateway.codemode import (
    CODEMODE_METHODS,
)
from contracts.gateway.desktop import DESKTOP_METHODS
from contracts.gateway.env_builds import ENV_BUILD_METHODS
from contracts.gateway.environments import ENVIRONMENT_METHODS
from contracts.gateway.files import FILE_METHODS
from contracts.gateway.fork import FORK_METHODS
from contracts.gateway.hosts import HOST_METHODS
from contracts.gateway.limits import LIMITS_METHODS
from contracts.gateway.live import LIVE_METHODS
from contracts.gateway.machines import MACHINE_METHODS
from contracts.gateway.metrics import METRICS_METHODS
from contracts.gateway.network import NETWORK_METHODS
from contracts.gateway.people import PEOPLE_METHODS
from contracts.gateway.runtime import RUNTIME_METHODS
from contracts.gateway.secrets import SECRETS_METHODS
from contracts.gateway.sessions import SESSION_METHODS
from contracts.gateway.ssh import SSH_METHODS
from contracts.gateway.stop import STOP_METHODS
from contracts.gateway.types import (  # re-exported: callers use gateway_rpc.X
    DEFAULT_GIT_USERNAME as DEFAULT_GIT_USERNAME,
    AddedRepo as AddedRepo,
    AddRepoParams as AddRepoParams,
    CreatedToken as CreatedToken,
    CreateInstanceParams as CreateInstanceParams,
    CreateMachineParams as CreateMachineParams,
    CreateTokenParams as CreateTokenParams,
    CronList as CronList,
    CronSetResult as CronSetResult,
    EnvList as EnvList,
    EnvName as EnvName,
    EventsTicket as EventsTicket,
    InstanceId as InstanceId,
    InstanceList as InstanceList,
    InstanceRef as InstanceRef,
    ListEnvParams as ListEnvParams,
    ListMachinesParams as ListMachinesParams,
    MachineExecParams as MachineExecParams,
    MachineId as MachineId,
    MachineList as MachineList,
    MachineProcessLogsParams as MachineProcessLogsParams,
    MachineProcessRef as MachineProcessRef,
    MachineProcessStartParams as MachineProcessStartParams,
    MachineRef as MachineRef,
    MachineWriteFileParams as MachineWriteFileParams,
    Name as Name,
    RebuildMachineParams as RebuildMachineParams,
    RefreshCodeResult as RefreshCodeResult,
    RefreshEnvParams as RefreshEnvParams,
    RefreshEnvResult as RefreshEnvResult,
    RefreshFailure as RefreshFailure,
    Removed as Removed,
    RemoveRepoParams as RemoveRepoParams,
    RepoList as RepoList,
    Revoked as Revoked,
    Secret as Secret,
    SetCronParams as SetCronParams,
    SetEnvParams as SetEnvParams,
    TokenList as TokenList,
    TokenRef as TokenRef,
    UnsetEnvParams as UnsetEnvParams,
)
from contracts.gateway.webhooks import WEBHOOK_METHODS
from contracts.models import EnvVar, Instance, Machine
from contracts.people import Scope
from contracts.ports import PORT_METHODS
from contracts.rpc.jsonrpc import AnySpec, ClientMethod, MethodSpec, NoParams
from contracts.rpc.openrpc import OpenRpcDocument
from contracts.rpc.pass_through import PassThrough

_NF: tuple[type[FleetError], ...] = (NotFound, Forbidden)
_DAEMON: tuple[type[FleetError], ...] = (
    NotFound,
    Forbidden,
    Conflict,
    MachineStopped,
    DaemonUnavailable,
    DaemonTimeout,
    InvalidParams,
    ToolError,
    BadPath,
)
_CREATE: tuple[type[FleetError], ...] = (NotFound, Forbidden, Conflict, RunningMachinesLimit)


# One constant per method: handlers register against them, clients call through them.
INSTANCES_CREATE = MethodSpec(
    "instances.create",
    CreateInstanceParams,
    Instance,
    "Create an instance.",
    scope="machines:exec",
    client=ClientMethod("create_instance", "name"),
)
INSTANCES_GET = MethodSpec(
    "instances.get",
    InstanceRef,
    Instance,
    "One instance.",
    _NF,
    scope="machines:read",
    reads=True,
    client=ClientMethod("get_instance", "instance_id"),
)
INSTANCES_LIST = MethodSpec(
    "instances.list",
    NoParams,
    InstanceList,
    "Every instance the caller may see.",
    scope="machines:read",
    reads=True,
    client=ClientMethod("list_instances", unwrap="instances"),
)
ENV_SET = MethodSpec(
    "env.set",
    SetEnvParams,
    EnvVar,
    "Set a platform or instance env var.",
    _NF,
    scope="env:write",
    client=ClientMethod("set_env", "name value instance_id"),
)
ENV_UNSET = MethodSpec(
    "env.unset",
    UnsetEnvParams,
    Removed,
    "Remove an env var.",
    _NF,
    scope="env:write",
    client=ClientMethod("unset_env", "name instance_id", unwrap="removed"),
)
ENV_LIST = MethodSpec(
    "env.list",
    ListEnvParams,
    EnvList,
    "Env vars of one scope.",
    _NF,
    scope="env:read",
    reads=True,
    client=ClientMethod("list_env", "instance_id", unwrap="vars"),
)
REPOS_ADD = MethodSpec(
    "repos.add", AddRepoParams, AddedRepo,
    "Add (or replace) a repo checkout, once git on the platform has seen the repo and branch.",
    (*_NF, RepoNotFound, BranchNotFound),
    scope="env:write", hand_written=True,
)  # fmt: skip
REPOS_REMOVE = MethodSpec(
    "repos.remove",
    RemoveRepoParams,
    Removed,
    "Remove a repo by path.",
    _NF,
    scope="env:write",
    client=ClientMethod("remove_repo", "instance_id path", unwrap="removed"),
)
REPOS_LIST = MethodSpec(
    "repos.list",
    InstanceRef,
    RepoList,
    "An instance's repos.",
    _NF,
    scope="machines:read",
    reads=True,
    client=ClientMethod("list_repos", "instance_id", unwrap="repos"),
)
MACHINES_CREATE = MethodSpec(
    "machines.create",
    CreateMachineParams,
    Machine,
    "Create the instance's machine.",
    (*_CREATE, IdempotencyKeyReused, NotSupported),
    scope="machines:exec",
    budget="create",
    hand_written=True,
)
MACHINES_GET = MethodSpec(
    "machines.get",
    MachineRef,
    Machine,
    "One machine.",
    _NF,
    scope="machines:read",
    reads=True,
    client=ClientMethod("get_machine", "machine_id"),
)
MACHINES_LIST = MethodSpec(
    wire_names.MACHINES_LIST,
    ListMachinesParams,
    MachineList,
    "Machines, newest first.",
    _NF,
    scope="machines:read",
    reads=True,
    client=ClientMethod("list_machines", "instance_id", unwrap="machines"),
)
MACHINES_ARCHIVE = MethodSpec(
    "machines.archive",
    MachineRef,
    Machine,
    "Stop a machine for good.",
    _NF,
    scope="machines:exec",
    client=ClientMethod("archive_machine", "machine_id"),
)
MACHINES_REBUILD = MethodSpec(
    "machines.rebuild",
    RebuildMachineParams,
    Machine,
    "Archive current machine, make a new one.",
    (*_CREATE, IdempotencyKeyReused, NotSupported),
    scope="machines:exec",
    budget="create",
    hand_written=True,
)
MACHINES_EXEC = MethodSpec(
    "machines.exec",
    MachineExecParams,
    ExecCommandResult,
    "Run argv on a machine, as its user (or as root: gvisor machines only).",
    (*_DAEMON, NotSupported, HostUnavailable),
    scope="machines:exec",
    budget="exec",
    hand_written=True,
    tool="exec",
)
MACHINES_WRITE_FILE = MethodSpec(
    "machines.writeFile",
    MachineWriteFileParams,
    WriteFileResult,
    "Write a file.",
    _DAEMON,
    scope="files:write",
    hand_written=True,
    tool="write_file",
)
MACHINES_REFRESH_ENV = MethodSpec(
    "machines.refreshEnv",
    RefreshEnvParams,
    RefreshEnvResult,
    "Rebuild the .env and push it to every running machine (of one instance).",
    _NF,
    scope="machines:exec",
    client=ClientMethod(
        "refresh_env", "instance_id", doc="None: of every instance the token may touch."
    ),
)
MACHINES_REFRESH_CODE = MethodSpec(
    "machines.refreshCode",
    MachineRef,
    RefreshCodeResult,
    "Put the platform's code on the machine and restart its daemon with it.",
    (*_DAEMON, NotSupported, ProviderError),
    scope="machines:exec",
    client=ClientMethod("refresh_code", "machine_id"),
)
MACHINES_PROCESS_START = MethodSpec(
    "machines.process.start",
    MachineProcessStartParams,
    ProcessInfo,
    "Start a background process on a machine.",
    _DAEMON,
    scope="machines:exec",
    client=ClientMethod("start_process", "machine_id command"),
    tool="process_start",
    passes=PassThrough(d.PROCESS_START),
)
MACHINES_PROCESS_LIST = MethodSpec(
    "machines.process.list",
    MachineRef,
    ProcessList,
    "A machine's background processes.",
    _DAEMON,
    scope="machines:read",
    reads=True,
    client=ClientMethod("list_processes", "machine_id", unwrap="processes"),
    tool="process_list",
    passes=PassThrough(d.PROCESS_LIST, look=True),
)
MACHINES_PROCESS_KILL = MethodSpec(
    "machines.process.kill",
    MachineProcessRef,
    ProcessInfo,
    "Stop a background process.",
    _DAEMON,
    scope="machines:exec",
    client=ClientMethod("kill_process", "machine_id", doc="Exactly one of pid and tag."),
    tool="process_kill",
    passes=PassThrough(d.PROCESS_KILL),
)
MACHINES_PROCESS_LOGS = MethodSpec(
    "machines.process.logs",
    MachineProcessLogsParams,
    ProcessLogs,
    "The last lines of a background process's output.",
    _DAEMON,
    scope="machines:read",
    reads=True,
    client=ClientMethod("process_logs", "machine_id"),
    tool="process_logs",
    passes=PassThrough(d.PROCESS_LOGS, look=True),
)
CRON_SET = MethodSpec(
    "cron.set",
    SetCronParams,
    CronSetResult,
    "Replace an instance's cron table and push it to its running machines.",
    _NF,
    scope="machines:exec",
    hand_written=True,
)
CRON_LIST = MethodSpec(
    "cron.list",
    InstanceRef,
    CronList,
    "An instance's cron table.",
    _NF,
    scope="machines:read",
    reads=True,
    client=ClientMethod("list_cron", "instance_id", unwrap="jobs"),
)
TOKENS_CREATE = MethodSpec(
    "tokens.create",
    CreateTokenParams,
    CreatedToken,
    "Create an access token.",
    _NF,
    scope="machines:read",
    client=ClientMethod(
        "create_token", "name instance_id", doc="Its secret, .token, is shown once."
    ),
)
TOKENS_LIST = MethodSpec(
    "tokens.list",
    NoParams,
    TokenList,
    "Access tokens the caller may see.",
    _NF,
    scope="machines:read",
    reads=True,
    client=ClientMethod("list_tokens", unwrap="tokens"),
)
TOKENS_REVOKE = MethodSpec(
    "tokens.revoke",
    TokenRef,
    Revoked,
    "Revoke an access token.",
    _NF,
    scope="machines:read",
    client=ClientMethod("revoke_token", "token_id=id", unwrap="revoked"),
)
RPC_DISCOVER = MethodSpec(
    "rpc.discover",
    NoParams,
    OpenRpcDocument,
    "This API as an OpenRPC document.",
    scope="machines:read",
    reads=True,
    public=True,
    client=ClientMethod("discover"),
    in_code=False,
)

EVENTS_TICKET = MethodSpec(
    "events.ticket", NoParams, EventsTicket,
    "A short-lived, single-use ticket for GET /events?ticket=..., acting as this token "
    "(for clients such as EventSource that cannot send an Authorization header).",
    scope="machines:read", client=ClientMethod("events_ticket"),
)  # fmt: skip

GATEWAY_METHODS: tuple[AnySpec, ...] = (
    INSTANCES_CREATE,
    INSTANCES_GET,
    INSTANCES_LIST,
    ENV_SET,
    ENV_UNSET,
    ENV_LIST,
    REPOS_ADD,
    REPOS_REMOVE,
    REPOS_LIST,
    MACHINES_CREATE,
    MACHINES_GET,
    MACHINES_LIST,
    MACHINES_ARCHIVE,
    MACHINES_REBUILD,
    MACHINES_EXEC,
    MACHINES_WRITE_FILE,
    MACHINES_REFRESH_ENV,
    MACHINES_REFRESH_CODE,
    MACHINES_PROCESS_START,
    MACHINES_PROCESS_LIST,
    MACHINES_PROCESS_KILL,
    MACHINES_PROCESS_LOGS,
    CRON_SET,
    CRON_LIST,
    TOKENS_CREATE,
    TOKENS_LIST,
    TOKENS_REVOKE,
    RPC_DISCOVER,
    EVENTS_TICKET,
    *LIVE_METHODS,
    *MACHINE_METHODS,
    *PORT_METHODS,
    *SSH_METHODS,
    *LIMITS_METHODS,
    *NETWORK_METHODS,
    *HOST_METHODS,
    *STOP_METHODS,
    *RUNTIME_METHODS,
    *FORK_METHODS,
    *CODEMODE_METHODS,
    *SESSION_METHODS,
    *FILE_METHODS,
    *ENVIRONMENT_METHODS,
    *ENV_BUILD_METHODS,
    *AUDIT_METHODS,
    *PEOPLE_METHODS,
    *CODE_METHODS,
    *DESKTOP_METHODS,
    *SECRETS_METHODS,
    *WEBHOOK_METHODS,
    *METRICS_METHODS,
)


def method_scopes(methods: tuple[AnySpec, ...]) -> dict[str, Scope]:
    """Each method's scope; TypeError, at import, naming any method that declares none (its
    spec is the only place a method's rights are said)."""
    unscoped = [m.name for m in methods if m.scope is None]
    if unscoped:
        raise TypeError(f"gateway methods without a scope on their MethodSpec: {unscoped}")
    return {m.name: m.scope for m in methods if m.scope is not None}


#: The scope each gateway method needs, on the instance its params name (or on the platform
#: when they name none): a view of the specs.
METHOD_SCOPES: Final[dict[str, Scope]] = method_scopes(GATEWAY_METHODS)

#: Methods that answer without a token: they reveal no data (discovery tools call them bare).
PUBLIC_METHODS: frozenset[str] = frozenset(s.name for s in GATEWAY_METHODS if s.public)

#: Methods that change nothing (``reads`` on their spec): the only ones the audit log does
#: not record. Every other method (one added later included) is recorded, with its params
#: redacted. A method that mints a credential (``events.ticket``, ``tokens.create``: a result
#: marked by ``contracts.credentials``) is not one, nor ``machines.readFile``: a file read is
#: a transfer, and recorded as one.
READ_ONLY_METHODS: frozenset[str] = frozenset(s.name for s in GATEWAY_METHODS if s.reads)

#: Methods whose answer ``POST /rpc/stream`` streams (``streams`` on their spec).
STREAMING_METHODS: frozenset[str] = frozenset(s.name for s in GATEWAY_METHODS if s.streams)
