"""The gateway's JSON-RPC methods (``POST /rpc``)."""

from __future__ import annotations

from contracts.audit import AUDIT_LIST, AUDIT_METHODS
from contracts.codemode import (
    CODEMODE_BRIDGES_LIST,
    CODEMODE_DESCRIBE,
    CODEMODE_LIST,
    CODEMODE_METHODS,
)
from contracts.daemon_rpc import (
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
from contracts.gateway_code import CODE_METHODS, MACHINES_CODE_LIST_CONTEXTS
from contracts.gateway_env_builds import ENV_BUILD_METHODS, ENVIRONMENTS_LIST
from contracts.gateway_environments import ENVIRONMENT_METHODS, INSTANCES_GET_ENVIRONMENT
from contracts.gateway_files import FILE_METHODS, MACHINES_LIST_DIR, MACHINES_STAT
from contracts.gateway_fork import FORK_METHODS
from contracts.gateway_hosts import HOST_METHODS, HOSTS_LIST
from contracts.gateway_limits import INSTANCES_GET_LIMITS, LIMITS_METHODS
from contracts.gateway_live import LIVE_METHODS, MACHINES_DAEMON_LOG
from contracts.gateway_machines import MACHINE_METHODS
from contracts.gateway_network import INSTANCES_GET_NETWORK_POLICY, NETWORK_METHODS
from contracts.gateway_people import INSTANCES_MEMBERS, PEOPLE_METHODS, USERS_LIST
from contracts.gateway_runtime import INSTANCES_GET_RUNTIME, RUNTIME_METHODS
from contracts.gateway_secrets import SECRETS_LIST, SECRETS_METHODS
from contracts.gateway_sessions import SESSION_METHODS, SESSIONS_LIST
from contracts.gateway_ssh import SSH_METHODS
from contracts.gateway_stop import INSTANCES_GET_AUTOSTOP, STOP_METHODS
from contracts.gateway_types import (  # re-exported: callers use gateway_rpc.X
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
from contracts.jsonrpc import AnySpec, MethodSpec, NoParams
from contracts.models import EnvVar, Instance, Machine
from contracts.openrpc import OpenRpcDocument
from contracts.ports import MACHINES_PORTS, PORT_METHODS

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
    "instances.create", CreateInstanceParams, Instance, "Create an instance."
)
INSTANCES_GET = MethodSpec("instances.get", InstanceRef, Instance, "One instance.", _NF)
INSTANCES_LIST = MethodSpec(
    "instances.list", NoParams, InstanceList, "Every instance the caller may see."
)
ENV_SET = MethodSpec("env.set", SetEnvParams, EnvVar, "Set a platform or instance env var.", _NF)
ENV_UNSET = MethodSpec("env.unset", UnsetEnvParams, Removed, "Remove an env var.", _NF)
ENV_LIST = MethodSpec("env.list", ListEnvParams, EnvList, "Env vars of one scope.", _NF)
REPOS_ADD = MethodSpec(
    "repos.add", AddRepoParams, AddedRepo,
    "Add (or replace) a repo checkout, once git on the platform has seen the repo and branch.",
    (*_NF, RepoNotFound, BranchNotFound),
)  # fmt: skip
REPOS_REMOVE = MethodSpec("repos.remove", RemoveRepoParams, Removed, "Remove a repo by path.", _NF)
REPOS_LIST = MethodSpec("repos.list", InstanceRef, RepoList, "An instance's repos.", _NF)
MACHINES_CREATE = MethodSpec(
    "machines.create",
    CreateMachineParams,
    Machine,
    "Create the instance's machine.",
    (*_CREATE, IdempotencyKeyReused, NotSupported),
)
MACHINES_GET = MethodSpec("machines.get", MachineRef, Machine, "One machine.", _NF)
MACHINES_LIST = MethodSpec(
    "machines.list", ListMachinesParams, MachineList, "Machines, newest first.", _NF
)
MACHINES_ARCHIVE = MethodSpec(
    "machines.archive", MachineRef, Machine, "Stop a machine for good.", _NF
)
MACHINES_REBUILD = MethodSpec(
    "machines.rebuild",
    RebuildMachineParams,
    Machine,
    "Archive current machine, make a new one.",
    (*_CREATE, IdempotencyKeyReused, NotSupported),
)
MACHINES_EXEC = MethodSpec(
    "machines.exec",
    MachineExecParams,
    ExecCommandResult,
    "Run argv on a machine, as its user (or as root: gvisor machines only).",
    (*_DAEMON, NotSupported, HostUnavailable),
)
MACHINES_WRITE_FILE = MethodSpec(
    "machines.writeFile", MachineWriteFileParams, WriteFileResult, "Write a file.", _DAEMON
)
MACHINES_REFRESH_ENV = MethodSpec(
    "machines.refreshEnv",
    RefreshEnvParams,
    RefreshEnvResult,
    "Rebuild the .env and push it to every running machine (of one instance).",
    _NF,
)
MACHINES_REFRESH_CODE = MethodSpec(
    "machines.refreshCode",
    MachineRef,
    RefreshCodeResult,
    "Put the platform's code on the machine and restart its daemon with it.",
    (*_DAEMON, NotSupported, ProviderError),
)
MACHINES_PROCESS_START = MethodSpec(
    "machines.process.start",
    MachineProcessStartParams,
    ProcessInfo,
    "Start a background process on a machine.",
    _DAEMON,
)
MACHINES_PROCESS_LIST = MethodSpec(
    "machines.process.list", MachineRef, ProcessList, "A machine's background processes.", _DAEMON
)
MACHINES_PROCESS_KILL = MethodSpec(
    "machines.process.kill", MachineProcessRef, ProcessInfo, "Stop a background process.", _DAEMON
)
MACHINES_PROCESS_LOGS = MethodSpec(
    "machines.process.logs",
    MachineProcessLogsParams,
    ProcessLogs,
    "The last lines of a background process's output.",
    _DAEMON,
)
CRON_SET = MethodSpec(
    "cron.set",
    SetCronParams,
    CronSetResult,
    "Replace an instance's cron table and push it to its running machines.",
    _NF,
)
CRON_LIST = MethodSpec("cron.list", InstanceRef, CronList, "An instance's cron table.", _NF)
TOKENS_CREATE = MethodSpec(
    "tokens.create", CreateTokenParams, CreatedToken, "Create an access token.", _NF
)
TOKENS_LIST = MethodSpec(
    "tokens.list", NoParams, TokenList, "Access tokens the caller may see.", _NF
)
TOKENS_REVOKE = MethodSpec("tokens.revoke", TokenRef, Revoked, "Revoke an access token.", _NF)
RPC_DISCOVER = MethodSpec(
    "rpc.discover", NoParams, OpenRpcDocument, "This API as an OpenRPC document."
)

EVENTS_TICKET = MethodSpec(
    "events.ticket", NoParams, EventsTicket,
    "A short-lived, single-use ticket for GET /events?ticket=..., acting as this token "
    "(for clients such as EventSource that cannot send an Authorization header).",
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
    *SECRETS_METHODS,
)

#: Methods that answer without a token: they reveal no data (discovery tools call them bare).
PUBLIC_METHODS: frozenset[str] = frozenset({RPC_DISCOVER.name})

#: Methods that change nothing: the only ones the audit log does not record. Every other
#: method (one added later included) is recorded, with its params redacted.
READ_ONLY_METHODS: frozenset[str] = frozenset(
    s.name
    for s in (
        INSTANCES_GET,
        INSTANCES_LIST,
        ENV_LIST,
        REPOS_LIST,
        MACHINES_GET,
        MACHINES_LIST,
        MACHINES_PROCESS_LIST,
        MACHINES_PROCESS_LOGS,
        CRON_LIST,
        TOKENS_LIST,
        RPC_DISCOVER,
        # A ticket for GET /events: it reads events, as the methods above read records.
        EVENTS_TICKET,
        AUDIT_LIST,
        MACHINES_DAEMON_LOG,
        MACHINES_PORTS,
        INSTANCES_GET_LIMITS,
        HOSTS_LIST,
        INSTANCES_GET_AUTOSTOP,
        INSTANCES_GET_RUNTIME,
        INSTANCES_GET_ENVIRONMENT,
        ENVIRONMENTS_LIST,
        INSTANCES_GET_NETWORK_POLICY,
        USERS_LIST,
        INSTANCES_MEMBERS,
        CODEMODE_LIST,
        CODEMODE_DESCRIBE,
        CODEMODE_BRIDGES_LIST,
        SECRETS_LIST,
        SESSIONS_LIST,
        # machines.readFile is not here: a file read is a transfer, and recorded as one.
        MACHINES_LIST_DIR,
        MACHINES_STAT,
        MACHINES_CODE_LIST_CONTEXTS,
    )
)
