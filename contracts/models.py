"""The records users see: instances, machines, env vars, repos."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from contracts.bus.events import WakeBy
from contracts.status import MachineStatus

#: Machine providers. ``local`` runs the daemon as a process on the platform's host; ``swarm``
#: runs many daemons in one process on it, for load testing.
ProviderName = Literal["local", "docker", "swarm"]
EnvScope = Literal["platform", "instance"]
#: What stands between a machine's code and the host's kernel (docs/runtimes.md):
#: ``namespaces``, the host's kernel behind namespaces, cgroups and a syscall filter (bubblewrap
#: or a container); ``gvisor``, gVisor's user-space kernel (``runsc``), where root is allowed.
Runtime = Literal["namespaces", "gvisor"]
#: The gVisor platform a ``gvisor`` machine runs on (how its kernel intercepts syscalls).
GvisorPlatform = Literal["ptrace", "systrap", "kvm"]
#: A new machine's runtime and, for ``gvisor``, its platform.
RuntimeChoice = tuple[Runtime, GvisorPlatform | None]
#: How the code a machine's daemon runs relates to the platform's, by git ancestry in the
#: platform's code repo: ``behind`` (the daemon's commit is an ancestor of the platform's),
#: ``ahead`` (the other way round), ``diverged`` (neither: another branch), ``current`` (the same
#: commit), ``unknown`` (no SHA, a SHA the repo does not have, or no repo).
CodeStatus = Literal["current", "behind", "ahead", "diverged", "unknown"]


class Model(msgspec.Struct, rename="camel", kw_only=True):
    pass


class Instance(Model, kw_only=True):
    id: str
    name: str
    created_at: datetime
    current_machine_id: str | None = None


class Machine(Model, kw_only=True):
    id: str
    instance_id: str
    provider: ProviderName
    external_id: str | None = None
    status: MachineStatus
    status_reason: str
    daemon_version: str | None = None
    daemon_git_sha: str | None = None
    #: The daemon runs older code than the platform's (``codeStatus`` is ``behind``);
    #: machines.refreshCode brings it up to date.
    update_available: bool = False
    code_status: CodeStatus = "unknown"
    #: The host whose provisioner started the machine (``FLEET_HOST_ID``); None until one
    #: took its ``machine.created``.
    host_id: str | None = None
    #: The environment it runs (``image REF``, ``dockerfile ...``, ``devcontainer ...``,
    #: ``default``), recorded when the provisioner resolved it; None until then.
    environment: str | None = None
    #: The build of it: the image ID (``sha256:...``) on the machine's engine; None for the
    #: platform's default environment on ``local`` (the host's root).
    environment_image: str | None = None
    #: Its runtime, fixed at its creation (docs/runtimes.md).
    runtime: Runtime = "namespaces"
    #: For a ``gvisor`` machine, the platform it runs on; None for ``namespaces``.
    runtime_platform: GvisorPlatform | None = None
    #: The size of its memory image (processes, memory, changes outside the home) when it was
    #: last paused (machines.pause); None if it never was.
    paused_bytes: int | None = None
    #: What asked for its last resume or start (``by`` of that ``machine.resume-requested`` or
    #: ``machine.started``); None if it never was woken since its creation.
    woken_by: WakeBy | None = None
    #: The repos that did not reach it (``repo PATH: reason; ...``): it runs without them, and
    #: its next start tries them again; None when every repo is in place.
    setup_warning: str | None = None
    created_at: datetime
    updated_at: datetime
    #: Its latest sample of CPU, memory, disk and network (``machines.metrics``), taken in
    #: the last minute; None when there is none (it is not running, or not sampled yet).
    metrics: MachineSample | None = None


class MachineSample(Model, kw_only=True):
    """What a machine used over one interval, as its host measured it (docs/monitoring.md):
    a field is None where its runtime does not tell it."""

    #: The interval's end, epoch seconds.
    at: float
    #: Its length, seconds.
    step_s: float
    #: CPU cores used, on average over the interval (1.0: one core all of it).
    cpu_cores: float | None = None
    #: Memory used (its working set: the page cache it could give back not counted), and
    #: its limit.
    memory_bytes: int | None = None
    memory_limit_bytes: int | None = None
    #: What its home takes on disk (measured about once a minute), and the size of the file
    #: system that holds it.
    disk_bytes: int | None = None
    disk_limit_bytes: int | None = None
    #: Bytes its network received and sent over the interval.
    net_in_bytes: int | None = None
    net_out_bytes: int | None = None


class EnvVar(Model, kw_only=True):
    name: str
    value: str
    scope: EnvScope


class GitCredentials(Model, kw_only=True):
    """A repo's credentials: stored encrypted, sent to the machine only in git's environment."""

    username: str
    token: str


class AccessToken(Model, kw_only=True):
    """An access token's record. The secret itself is shown once, at creation, and stored only
    as a hash."""

    id: str
    name: str
    #: The one instance of a token made for one instance (its ``instanceIds`` then hold it).
    instance_id: str | None = None
    created_at: datetime
    #: Set once the token is revoked; the record stays, as an audit trail.
    revoked_at: datetime | None = None
    #: What the token may do (``contracts.people``), never more than its user's role allows.
    scopes: list[str] = msgspec.field(default_factory=list)
    #: The instances it may touch; None: every instance its user may.
    instance_ids: list[str] | None = None
    #: Its user; None: made with the admin token, bounded by its scopes alone.
    user_id: str | None = None
    #: None: never expires (only tokens that predate expiry).
    expires_at: datetime | None = None
    last_used_at: datetime | None = None


class Repo(Model, kw_only=True):
    url: str
    branch: str
    path: str
    #: A token was given for this repo; it is stored encrypted and never shown.
    has_credentials: bool = False
