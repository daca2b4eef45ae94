"""The gateway's JSON-RPC methods (``POST /rpc``)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from contracts import validation
from contracts.codemode import CODEMODE_METHODS
from contracts.daemon_rpc import (
    ExecCommandParams,
    ExecCommandResult,
    ProcessInfo,
    ProcessList,
    ProcessLogs,
    ProcessLogsParams,
    ProcessRef,
    ProcessStartParams,
    SelfUpdateResult,
    WriteFileParams,
    WriteFileResult,
)
from contracts.errors import (
    Conflict,
    DaemonTimeout,
    DaemonUnavailable,
    FleetError,
    Forbidden,
    InvalidParams,
    NotFound,
    NotSupported,
    ProviderError,
    ToolError,
)
from contracts.gateway_live import LIVE_METHODS
from contracts.gateway_machines import MACHINE_METHODS
from contracts.ids import ID_LENGTH, INSTANCE_ID_RE, MACHINE_ID_RE
from contracts.jsonrpc import AnySpec, MethodSpec, NoParams, Params, Result
from contracts.machine_files import CronJob
from contracts.models import AccessToken, EnvVar, Instance, Machine, ProviderName, Repo
from contracts.openrpc import OpenRpcDocument

InstanceId = Annotated[
    str, msgspec.Meta(pattern=INSTANCE_ID_RE.pattern, min_length=ID_LENGTH, max_length=ID_LENGTH)
]
MachineId = Annotated[
    str, msgspec.Meta(pattern=MACHINE_ID_RE.pattern, min_length=ID_LENGTH, max_length=ID_LENGTH)
]
EnvName = Annotated[str, msgspec.Meta(pattern=validation.ENV_NAME_PATTERN, max_length=256)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
#: The user name git is given with a repo's token when none is set (GitHub's convention).
DEFAULT_GIT_USERNAME = "x-access-token"


class CreateInstanceParams(Params, kw_only=True):
    name: Name


class InstanceRef(Params, kw_only=True):
    instance_id: InstanceId


class InstanceList(Result, kw_only=True):
    instances: list[Instance]


class SetEnvParams(Params, kw_only=True):
    #: No instanceId: the platform scope, set by the operator for every instance.
    instance_id: InstanceId | None = None
    name: EnvName
    value: Annotated[str, msgspec.Meta(max_length=128 * 1024)]

    def __post_init__(self) -> None:
        validation.check_env_name(self.name)
        # The .env must read the same in python-dotenv and sh (NUL included: no env holds it).
        validation.check_env_value(self.name, self.value)


class UnsetEnvParams(Params, kw_only=True):
    instance_id: InstanceId | None = None
    name: EnvName

    def __post_init__(self) -> None:
        validation.check_env_name(self.name)


class ListEnvParams(Params, kw_only=True):
    instance_id: InstanceId | None = None


class EnvList(Result, kw_only=True):
    vars: list[EnvVar]


class Removed(Result, kw_only=True):
    removed: bool


Secret = Annotated[str, msgspec.Meta(min_length=1, max_length=4096, pattern=r"^[^\x00-\x1f]+$")]


class AddRepoParams(Params, kw_only=True):
    instance_id: InstanceId
    url: Annotated[str, msgspec.Meta(max_length=2048)]
    branch: str
    path: Annotated[str, msgspec.Meta(max_length=1024)]
    #: For private repos: a password or access token, given to git through its askpass
    #: prompt from the environment (never argv, the URL or .git/config).
    token: Secret | None = None
    username: Annotated[str, msgspec.Meta(max_length=256, pattern=r"^[^\x00-\x1f:]*$")] = (
        DEFAULT_GIT_USERNAME
    )

    def __post_init__(self) -> None:
        validation.check_repo_url(self.url)
        validation.check_branch(self.branch)
        validation.check_checkout_path(self.path)


class CreateTokenParams(Params, kw_only=True):
    name: Name
    #: Omitted: an admin token (only an admin may create one).
    instance_id: InstanceId | None = None


class CreatedToken(Result, kw_only=True):
    id: str
    #: The secret: shown this once, never stored.
    token: str


class TokenList(Result, kw_only=True):
    tokens: list[AccessToken]


class TokenRef(Params, kw_only=True):
    id: Annotated[str, msgspec.Meta(pattern=r"^t-[0-9a-f]{16}$", min_length=18, max_length=18)]


class Revoked(Result, kw_only=True):
    revoked: bool


class EventsTicket(Result, kw_only=True):
    #: Opens one ``GET /events?ticket=...``, once, within ``expiresInS`` seconds.
    ticket: str
    expires_in_s: float


class RemoveRepoParams(Params, kw_only=True):
    instance_id: InstanceId
    path: str


class RepoList(Result, kw_only=True):
    repos: list[Repo]


class CreateMachineParams(Params, kw_only=True):
    instance_id: InstanceId
    #: Omitted: the platform's default (fleet up --provider). ``swarm`` is for admins only.
    provider: ProviderName | None = None


class MachineRef(Params, kw_only=True):
    machine_id: MachineId


class ListMachinesParams(Params, kw_only=True):
    instance_id: InstanceId | None = None


class MachineList(Result, kw_only=True):
    machines: list[Machine]


class MachineExecParams(ExecCommandParams, kw_only=True):
    machine_id: MachineId


class MachineWriteFileParams(WriteFileParams, kw_only=True):
    machine_id: MachineId


class MachineProcessStartParams(ProcessStartParams, kw_only=True):
    machine_id: MachineId


class MachineProcessRef(ProcessRef, kw_only=True):
    machine_id: MachineId


class MachineProcessLogsParams(ProcessLogsParams, kw_only=True):
    machine_id: MachineId


class RefreshEnvParams(Params, kw_only=True):
    #: Omitted: every running machine of every instance the caller may touch.
    instance_id: InstanceId | None = None


class RefreshFailure(Result, kw_only=True):
    machine_id: str
    code: int
    message: str


class RefreshEnvResult(Result, kw_only=True):
    #: Running machines the new .env (and cron table) was sent to.
    machines: int
    #: Of those, how many daemons confirmed the write.
    written: int
    failed: list[RefreshFailure]


class RefreshCodeResult(SelfUpdateResult, kw_only=True):
    machine_id: str
    #: What the provider did to put the code on the machine.
    message: str


class SetCronParams(Params, kw_only=True):
    instance_id: InstanceId
    #: The whole table: it replaces the previous one. Pushed to running machines at once,
    #: and to new machines at setup.
    jobs: Annotated[list[CronJob], msgspec.Meta(max_length=256)]

    def __post_init__(self) -> None:
        validation.check_cron_jobs(self.jobs)


class CronList(Result, kw_only=True):
    jobs: list[CronJob]


class CronSetResult(CronList, kw_only=True):
    #: Running machines of the instance the new table was pushed to, and those that failed.
    machines: int
    failed: list[RefreshFailure]


_NF: tuple[type[FleetError], ...] = (NotFound, Forbidden)
_DAEMON: tuple[type[FleetError], ...] = (
    NotFound,
    Forbidden,
    Conflict,
    DaemonUnavailable,
    DaemonTimeout,
    InvalidParams,
    ToolError,
)
_CREATE: tuple[type[FleetError], ...] = (NotFound, Forbidden, Conflict)


# One constant per method: handlers register against them, clients call through them.
INSTANCES_CREATE: MethodSpec[CreateInstanceParams, Instance] = MethodSpec(
    "instances.create", CreateInstanceParams, Instance, "Create an instance."
)
INSTANCES_GET: MethodSpec[InstanceRef, Instance] = MethodSpec(
    "instances.get", InstanceRef, Instance, "One instance.", _NF
)
INSTANCES_LIST: MethodSpec[NoParams, InstanceList] = MethodSpec(
    "instances.list", NoParams, InstanceList, "Every instance the caller may see."
)
ENV_SET: MethodSpec[SetEnvParams, EnvVar] = MethodSpec(
    "env.set", SetEnvParams, EnvVar, "Set a platform or instance env var.", _NF
)
ENV_UNSET: MethodSpec[UnsetEnvParams, Removed] = MethodSpec(
    "env.unset", UnsetEnvParams, Removed, "Remove an env var.", _NF
)
ENV_LIST: MethodSpec[ListEnvParams, EnvList] = MethodSpec(
    "env.list", ListEnvParams, EnvList, "Env vars of one scope.", _NF
)
REPOS_ADD: MethodSpec[AddRepoParams, Repo] = MethodSpec(
    "repos.add", AddRepoParams, Repo, "Add (or replace) a repo checkout.", _NF
)
REPOS_REMOVE: MethodSpec[RemoveRepoParams, Removed] = MethodSpec(
    "repos.remove", RemoveRepoParams, Removed, "Remove a repo by path.", _NF
)
REPOS_LIST: MethodSpec[InstanceRef, RepoList] = MethodSpec(
    "repos.list", InstanceRef, RepoList, "An instance's repos.", _NF
)
MACHINES_CREATE: MethodSpec[CreateMachineParams, Machine] = MethodSpec(
    "machines.create", CreateMachineParams, Machine, "Create the instance's machine.", _CREATE
)
MACHINES_GET: MethodSpec[MachineRef, Machine] = MethodSpec(
    "machines.get", MachineRef, Machine, "One machine.", _NF
)
MACHINES_LIST: MethodSpec[ListMachinesParams, MachineList] = MethodSpec(
    "machines.list", ListMachinesParams, MachineList, "Machines, newest first.", _NF
)
MACHINES_ARCHIVE: MethodSpec[MachineRef, Machine] = MethodSpec(
    "machines.archive", MachineRef, Machine, "Stop a machine for good.", _NF
)
MACHINES_REBUILD: MethodSpec[InstanceRef, Machine] = MethodSpec(
    "machines.rebuild", InstanceRef, Machine, "Archive current machine, make a new one.", _CREATE
)
MACHINES_EXEC: MethodSpec[MachineExecParams, ExecCommandResult] = MethodSpec(
    "machines.exec", MachineExecParams, ExecCommandResult, "Run argv on a machine.", _DAEMON
)
MACHINES_WRITE_FILE: MethodSpec[MachineWriteFileParams, WriteFileResult] = MethodSpec(
    "machines.writeFile", MachineWriteFileParams, WriteFileResult, "Write a file.", _DAEMON
)
MACHINES_REFRESH_ENV: MethodSpec[RefreshEnvParams, RefreshEnvResult] = MethodSpec(
    "machines.refreshEnv",
    RefreshEnvParams,
    RefreshEnvResult,
    "Rebuild the .env and push it to every running machine (of one instance).",
    _NF,
)
MACHINES_REFRESH_CODE: MethodSpec[MachineRef, RefreshCodeResult] = MethodSpec(
    "machines.refreshCode",
    MachineRef,
    RefreshCodeResult,
    "Put the platform's code on the machine and restart its daemon with it.",
    (*_DAEMON, NotSupported, ProviderError),
)
MACHINES_PROCESS_START: MethodSpec[MachineProcessStartParams, ProcessInfo] = MethodSpec(
    "machines.process.start",
    MachineProcessStartParams,
    ProcessInfo,
    "Start a background process on a machine.",
    _DAEMON,
)
MACHINES_PROCESS_LIST: MethodSpec[MachineRef, ProcessList] = MethodSpec(
    "machines.process.list", MachineRef, ProcessList, "A machine's background processes.", _DAEMON
)
MACHINES_PROCESS_KILL: MethodSpec[MachineProcessRef, ProcessInfo] = MethodSpec(
    "machines.process.kill", MachineProcessRef, ProcessInfo, "Stop a background process.", _DAEMON
)
MACHINES_PROCESS_LOGS: MethodSpec[MachineProcessLogsParams, ProcessLogs] = MethodSpec(
    "machines.process.logs",
    MachineProcessLogsParams,
    ProcessLogs,
    "The last lines of a background process's output.",
    _DAEMON,
)
CRON_SET: MethodSpec[SetCronParams, CronSetResult] = MethodSpec(
    "cron.set",
    SetCronParams,
    CronSetResult,
    "Replace an instance's cron table and push it to its running machines.",
    _NF,
)
CRON_LIST: MethodSpec[InstanceRef, CronList] = MethodSpec(
    "cron.list", InstanceRef, CronList, "An instance's cron table.", _NF
)
TOKENS_CREATE: MethodSpec[CreateTokenParams, CreatedToken] = MethodSpec(
    "tokens.create", CreateTokenParams, CreatedToken, "Create an access token.", _NF
)
TOKENS_LIST: MethodSpec[NoParams, TokenList] = MethodSpec(
    "tokens.list", NoParams, TokenList, "Access tokens the caller may see.", _NF
)
TOKENS_REVOKE: MethodSpec[TokenRef, Revoked] = MethodSpec(
    "tokens.revoke", TokenRef, Revoked, "Revoke an access token.", _NF
)
RPC_DISCOVER: MethodSpec[NoParams, OpenRpcDocument] = MethodSpec(
    "rpc.discover", NoParams, OpenRpcDocument, "This API as an OpenRPC document."
)

EVENTS_TICKET: MethodSpec[NoParams, EventsTicket] = MethodSpec(
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
    *CODEMODE_METHODS,
)

#: Methods that answer without a token: they reveal no data (discovery tools call them bare).
PUBLIC_METHODS: frozenset[str] = frozenset({RPC_DISCOVER.name})
