"""The params and results of the gateway's JSON-RPC methods (the table is ``gateway_rpc``)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from contracts import validation
from contracts.credentials import credential
from contracts.daemon.machine_files import CronJob
from contracts.daemon.rpc import (
    ExecCommandParams,
    ProcessLogsParams,
    ProcessRef,
    ProcessStartParams,
    SelfUpdateResult,
    WriteFileParams,
)
from contracts.ids import ID_LENGTH, INSTANCE_ID_RE, MACHINE_ID_RE, SNAPSHOT_ID_RE
from contracts.models import (
    AccessToken,
    EnvVar,
    Instance,
    Machine,
    ProviderName,
    Repo,
    Runtime,
)
from contracts.people import Scope
from contracts.rpc.jsonrpc import Params, Result

InstanceId = Annotated[
    str, msgspec.Meta(pattern=INSTANCE_ID_RE.pattern, min_length=ID_LENGTH, max_length=ID_LENGTH)
]
MachineId = Annotated[
    str, msgspec.Meta(pattern=MACHINE_ID_RE.pattern, min_length=ID_LENGTH, max_length=ID_LENGTH)
]
SnapshotId = Annotated[
    str, msgspec.Meta(pattern=SNAPSHOT_ID_RE.pattern, min_length=ID_LENGTH, max_length=ID_LENGTH)
]
EnvName = Annotated[str, msgspec.Meta(pattern=validation.ENV_NAME_PATTERN, max_length=256)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
#: A client's name for one logical ``machines.create`` or ``machines.rebuild`` (sent again on
#: each retry of it): 8 to
#: 128 characters of ``[A-Za-z0-9._:-]`` (a UUID fits; nothing to escape in a Redis key or log).
IdempotencyKey = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z0-9._:-]{8,128}$", min_length=8, max_length=128)
]
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


#: A user's id (``u-...``) or email.
UserRef = Annotated[str, msgspec.Meta(min_length=1, max_length=320, pattern=r"^[^\x00-\x1f]+$")]


class CreateTokenParams(Params, kw_only=True):
    name: Name
    #: One instance (shorthand for ``instanceIds: [id]``); with neither, every instance the
    #: token's user may reach (with the admin token: an admin token, unless ``scopes`` says less).
    instance_id: InstanceId | None = None
    instance_ids: Annotated[list[InstanceId], msgspec.Meta(max_length=100)] | None = None
    #: Omitted: every scope (bounded, as always, by the user's role).
    scopes: Annotated[list[Scope], msgspec.Meta(min_length=1, max_length=8)] | None = None
    #: Omitted: ``FLEET_TOKEN_DEFAULT_TTL_S``; never more than ``FLEET_TOKEN_MAX_TTL_S``.
    expires_in_s: Annotated[int, msgspec.Meta(ge=1)] | None = None
    #: Whose token: omitted, the caller's own; another user's only for an admin.
    user: UserRef | None = None


class CreatedToken(Result, kw_only=True):
    id: str
    #: The secret: shown this once, never stored.
    token: Annotated[str, credential()]


class TokenList(Result, kw_only=True):
    tokens: list[AccessToken]


class TokenRef(Params, kw_only=True):
    id: Annotated[str, msgspec.Meta(pattern=r"^t-[0-9a-f]{16}$", min_length=18, max_length=18)]


class Revoked(Result, kw_only=True):
    revoked: bool


class EventsTicket(Result, kw_only=True):
    #: Opens one ``GET /events?ticket=...``, once, within ``expiresInS`` seconds.
    ticket: Annotated[str, credential()]
    expires_in_s: float


class AddedRepo(Repo, kw_only=True):
    """repos.add's answer: the repo as stored, and whether the platform could check it."""

    #: Set when the platform could not check the repo (its host unresolved or unanswering
    #: from here, a check over its time, an ssh remote this host has no key for): it is
    #: added, and the machine's own clone is the test. None: the repo and branch were seen.
    warning: str | None = None


class RemoveRepoParams(Params, kw_only=True):
    instance_id: InstanceId
    path: str


class RepoList(Result, kw_only=True):
    repos: list[Repo]


class CreateMachineParams(Params, kw_only=True):
    instance_id: InstanceId
    #: Omitted: the platform's default (fleet up --provider). ``swarm`` is for admins only.
    provider: ProviderName | None = None
    #: The same key and params again (a retry whose first answer was lost) answer the machine
    #: the first call created, without creating another; the same key with other params is
    #: ``IdempotencyKeyReused``. Scoped to the calling token, kept ``FLEET_IDEMPOTENCY_TTL_S``.
    idempotency_key: IdempotencyKey | None = None
    #: A snapshot of this instance (machines.snapshot): the machine starts with its home. It is
    #: a machine of the provider of the machine the snapshot was taken of (``provider``, if
    #: given, must be that one).
    from_snapshot: SnapshotId | None = None
    #: Omitted: the instance's (instances.setRuntime), else the platform's (FLEET_RUNTIME). A
    #: runtime the provider cannot run is ``NotSupported``, never another one in its place.
    runtime: Runtime | None = None


class RebuildMachineParams(Params, kw_only=True):
    instance_id: InstanceId
    #: As ``machines.create``'s: the same key again answers the machine the first call made,
    #: without archiving it or making another; with another instance (or a key used for a
    #: create) it is ``IdempotencyKeyReused``.
    idempotency_key: IdempotencyKey | None = None


class MachineRef(Params, kw_only=True):
    machine_id: MachineId


class ListMachinesParams(Params, kw_only=True):
    instance_id: InstanceId | None = None


class MachineList(Result, kw_only=True):
    machines: list[Machine]


class MachineExecParams(ExecCommandParams, kw_only=True):
    machine_id: MachineId
    #: ``root``: run as root inside the machine, only on a ``gvisor`` machine (root of its own
    #: kernel, not the host's); on a ``namespaces`` machine it is ``NotSupported``. Omitted:
    #: the machine's user, through its daemon.
    user: Literal["root"] | None = None


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
