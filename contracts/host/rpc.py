"""The host methods: what only a machine's own host can do to it, served by that host's
provisioner replicas on ``host.<hostId>.rpc`` (NATS request/reply, one replica answers).

The gateway calls them for ``machines.restart``, ``machines.refreshCode`` and
``instances.setNetworkPolicy``, the prober's boot watchdog ``host.daemonRuns``: a machine's
daemon, its code and its process live on its host (its data dir, its Docker engine), which no
other host and no gateway can reach. Only platform services may publish there: a machine's NATS
user may not (services/auth_callout)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from contracts.bus.events import HomeCopy
from contracts.daemon.rpc import ExecCommandParams, ExecCommandResult
from contracts.errors import Conflict, NotFound, NotSupported, ProviderError
from contracts.gateway.env_builds import HOST_BUILD_ENVIRONMENT, HOST_ENV_BUILD_METHODS
from contracts.gateway.fork import MAX_FORKS
from contracts.gateway.types import MachineId, SnapshotId
from contracts.rpc.jsonrpc import AnySpec, MethodSpec, Params, Result

#: While a replica handles a request that carries ``WORKING_ASK_HEADER``, it tells the asker
#: so, at once and every ``WORKING_EVERY_S``: an empty message with ``WORKING_HEADER`` on the
#: request's inbox, before the answer. An asker that heard one and then nothing for
#: ``WORKING_SILENCE_S`` knows the replica is gone (a restart, a kill) and says so, rather than
#: wait out a long call's whole timeout. A request without the ask (an asker of an older
#: release) gets its answer alone.
WORKING_HEADER = "Fleet-Working"
WORKING_ASK_HEADER = "Fleet-Working-Ask"
WORKING_EVERY_S = 2.0
WORKING_SILENCE_S = 15.0


class HostMachineParams(Params, kw_only=True):
    machine_id: MachineId


class InstallCodeParams(HostMachineParams, kw_only=True):
    #: The platform's git SHA: the code the machine's daemon is to run next.
    target_ref: str


class RestartResult(Result, kw_only=True):
    #: False: the machine is not running on its host (nothing was restarted).
    restarted: bool


class ApplyEgressResult(Result, kw_only=True):
    #: False: the machine is not running on its host (it gets the policy when it starts).
    applied: bool


class DaemonRunsResult(Result, kw_only=True):
    #: Whether the machine's daemon runs on its host (its sandbox, its container): a daemon
    #: that has not reported ready yet may only be slow (a loaded host, a restore).
    runs: bool


class InstallCodeResult(Result, kw_only=True):
    #: What the provider did ("installed code 0123456789ab in /run/fleet/code").
    message: str


#: How long a restart of a machine whose sandbox started moments ago may wait for its
#: supervisor to have its signal handlers (its daemon holding NATS): a restart's signal would end
#: a supervisor without them, and the machine with it (providers/gvisor/pause.py).
RESTART_WAIT_S = 30.0
RESTART_DAEMON = MethodSpec(
    "host.restartDaemon",
    HostMachineParams,
    RestartResult,
    "Restart the machine's daemon in place (its processes kept).",
    errors=(NotFound, NotSupported, ProviderError),
)
DAEMON_RUNS = MethodSpec(
    "host.daemonRuns",
    HostMachineParams,
    DaemonRunsResult,
    "Whether the machine's daemon runs on its host (the boot watchdog's question at a deadline).",
    errors=(NotFound, NotSupported),
)
INSTALL_CODE = MethodSpec(
    "host.installCode",
    InstallCodeParams,
    InstallCodeResult,
    "Install the platform's code at target_ref for the machine's daemon.",
    errors=(NotFound, NotSupported, ProviderError),
)


class SnapshotParams(HostMachineParams, kw_only=True):
    #: The snapshot (of the machine's home, on its host).
    snapshot_id: SnapshotId


class SnapshotTaken(Result, kw_only=True):
    copied: HomeCopy


class SnapshotDropped(Result, kw_only=True):
    dropped: bool


TAKE_SNAPSHOT = MethodSpec(
    "host.takeSnapshot",
    SnapshotParams,
    SnapshotTaken,
    "A read-only copy of the machine's home, as of one instant.",
    errors=(NotFound, NotSupported, ProviderError),
)
DROP_SNAPSHOT = MethodSpec(
    "host.dropSnapshot",
    SnapshotParams,
    SnapshotDropped,
    "Remove a snapshot taken of the machine (machines made from it keep their homes).",
    errors=(NotFound, NotSupported, ProviderError),
)
APPLY_EGRESS = MethodSpec(
    "host.applyEgress",
    HostMachineParams,
    ApplyEgressResult,
    "Write the machine's instance's egress policy into the machine's network namespace.",
    errors=(NotFound, NotSupported, ProviderError),
)


class RootExecParams(ExecCommandParams, kw_only=True):
    machine_id: MachineId


EXEC_AS_ROOT = MethodSpec(
    "host.execAsRoot",
    RootExecParams,
    ExecCommandResult,
    "Run argv as root inside a gvisor machine (root of gVisor's kernel, never the host's).",
    errors=(NotFound, NotSupported, ProviderError),
)


class MemoryImageParams(SnapshotParams, kw_only=True):
    #: How many forks are to be restored from it (the last one's restore deletes it); None:
    #: a snapshot's, kept until deleted (host.dropSnapshot).
    forks: Annotated[int, msgspec.Meta(ge=1, le=MAX_FORKS)] | None = None


class MemoryImageTaken(Result, kw_only=True):
    #: The image's size in bytes.
    bytes: int
    #: How long the source stood still: its checkpoint, its home's copy and its restore.
    pause_ms: float
    #: How its home was copied.
    copied: HomeCopy


TAKE_MEMORY_IMAGE = MethodSpec(
    "host.takeMemoryImage",
    MemoryImageParams,
    MemoryImageTaken,
    "Checkpoint a gvisor machine and restore it at once, keeping its memory image and a copy "
    "of its home for forks; the machine's NATS credential is replaced, so that the copy of it "
    "in the image is refused.",
    errors=(NotFound, NotSupported, Conflict, ProviderError),
)
HOST_METHODS: tuple[AnySpec, ...] = (
    RESTART_DAEMON,
    DAEMON_RUNS,
    INSTALL_CODE,
    TAKE_SNAPSHOT,
    DROP_SNAPSHOT,
    APPLY_EGRESS,
    EXEC_AS_ROOT,
    TAKE_MEMORY_IMAGE,
    *HOST_ENV_BUILD_METHODS,
)


class HostWait(msgspec.Struct, frozen=True):
    """How long an asker waits for a host method's answer: its timeout of ``kind`` (``rpc``:
    an RPC's, FLEET_RPC_TIMEOUT_S; ``copy``: a home copied or code installed; ``build``: an
    environment built, FLEET_ENV_BUILD_TIMEOUT_S), plus ``extra_s``, plus the command's own time
    where the params carry one (``timeout_s``: ``with_command``)."""

    kind: Literal["rpc", "copy", "build"] = "rpc"
    extra_s: float = 0.0
    with_command: bool = False


#: Each host method's wait, where it is not an RPC's (``HostWait()``).
HOST_WAITS: dict[str, HostWait] = {
    RESTART_DAEMON.name: HostWait(extra_s=RESTART_WAIT_S),
    INSTALL_CODE.name: HostWait("copy"),
    TAKE_SNAPSHOT.name: HostWait("copy"),
    TAKE_MEMORY_IMAGE.name: HostWait("copy"),
    EXEC_AS_ROOT.name: HostWait(with_command=True),
    HOST_BUILD_ENVIRONMENT.name: HostWait("build"),
}


def wait_of(spec: AnySpec) -> HostWait:
    return HOST_WAITS.get(spec.name, HostWait())
