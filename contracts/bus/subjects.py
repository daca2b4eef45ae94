"""NATS subject names. Nothing outside contracts/ spells a subject string."""

from __future__ import annotations

import re
from enum import StrEnum

#: The JetStream stream that stores every machine event.
STREAM_NAME = "FLEET_MACHINE_EVENTS"


class EventKind(StrEnum):
    CREATED = "created"
    PROVISIONED = "provisioned"
    DAEMON_STATUS_REPORTED = "daemon-status-reported"
    SETUP_PUSHED = "setup-pushed"
    READY = "ready"
    FAILED = "failed"
    #: A machine is being archived (its status says ``archiving``): the provisioner revokes
    #: it, ends its processes and removes its files.
    ARCHIVED = "archived"
    #: An archiving machine's files are gone: its status is now ``archived``.
    FILES_REMOVED = "files-removed"
    UNRESPONSIVE = "unresponsive"
    #: The setup pusher wrote a changed configuration's .env to a running machine.
    ENV_PUSHED = "env-pushed"
    #: The setup pusher reconciled a running machine's checkouts with the instance's repos.
    REPOS_RECONCILED = "repos-reconciled"
    #: A machine was stopped (by request, or idle): the provisioner ends its processes.
    STOPPED = "stopped"
    #: Every process of a stopping machine has exited: its status is now ``stopped``.
    PROCESSES_ENDED = "processes-ended"
    #: A stopped machine was started: the provisioner brings the same machine back.
    STARTED = "started"
    #: A gvisor machine was asked to pause (machines.pause): the provisioner checkpoints it.
    PAUSE_REQUESTED = "pause-requested"
    #: A pausing machine's memory is on disk, its sandbox gone: its status is now ``paused``.
    PAUSED = "paused"
    #: A pause refused before the sandbox was touched: the machine is ``ready`` again.
    PAUSE_REFUSED = "pause-refused"
    #: A paused machine was asked to resume (machines.resume): the provisioner restores it.
    RESUME_REQUESTED = "resume-requested"
    #: A resuming machine is restored: its status is now ``ready``.
    RESUMED = "resumed"
    #: The machine's host is lost: the prober marks its machines lost.
    LOST = "lost"
    #: The machine's network policy refused a name or a connection (rate-limited per machine).
    EGRESS_DENIED = "egress-denied"
    #: A devcontainer lifecycle command ran in the machine (its stage, exit code and output).
    LIFECYCLE_RAN = "lifecycle-ran"
    #: Lines of a devcontainer lifecycle command's output while it runs (batched).
    LIFECYCLE_OUTPUT = "lifecycle-output"
    #: Lines of the build log of the machine's environment while it builds (batched).
    ENVIRONMENT_BUILD_OUTPUT = "environment-build-output"
    #: The egress proxy added a secret to a request of the machine for the first time (the
    #: secret's name and the host, never its value): the gateway audits it.
    SECRET_USED = "secret-used"  # noqa: S105 - an event kind, not a password


class ConfigKind(StrEnum):
    """Events about an instance's (or the platform's) configuration, not about one machine:
    ``config.<kind>.<scope>``, where the scope is an instance id or ``platform``."""

    ENV_CHANGED = "env-changed"
    REPOS_CHANGED = "repos-changed"


#: The scope token of a platform-wide configuration change (instance ids start with ``i-``).
PLATFORM_SCOPE = "platform"

#: Subjects captured by the stream: every kind above, for any machine or configuration scope.
STREAM_SUBJECTS: tuple[str, ...] = tuple(f"machine.{k.value}.*" for k in EventKind) + tuple(
    f"config.{k.value}.*" for k in ConfigKind
)

#: What a monitor subscribes to in order to see every event (`nats sub 'machine.>'`).
ALL_MACHINE_EVENTS = "machine.>"


def event(kind: EventKind, machine_id: str) -> str:
    """``machine.<kind>.<machineId>``"""
    return f"machine.{kind.value}.{machine_id}"


def machine_of(subject: str) -> str:
    """The machine id of a ``machine.<kind>.<machineId>`` subject."""
    return subject.rsplit(".", 1)[-1]


def event_filter(kind: EventKind | ConfigKind) -> str:
    """Every machine's (or scope's) events of one kind, for a consumer's filter subject."""
    if isinstance(kind, ConfigKind):
        return f"config.{kind.value}.*"
    return f"machine.{kind.value}.*"


def config_event(kind: ConfigKind, instance_id: str | None) -> str:
    """``config.<kind>.<instanceId>``, or ``config.<kind>.platform`` for platform-wide."""
    return f"config.{kind.value}.{instance_id or PLATFORM_SCOPE}"


def config_scope_of(subject: str) -> str:
    """The scope (an instance id, or ``platform``) of a ``config.<kind>.<scope>`` subject."""
    return subject.rsplit(".", 1)[-1]


def machine_events(machine_id: str) -> str:
    """Every event of one machine."""
    return f"machine.*.{machine_id}"


def kind_of(subject: str) -> str:
    """The kind of a ``machine.<kind>.<machineId>`` subject."""
    return subject.split(".", 2)[1]


#: Events after which a machine's daemon answers nothing more, each with what became of the
#: machine: a call still waiting for its daemon ends then, not at its timeout.
DAEMON_GONE: dict[str, str] = {
    EventKind.PAUSED: "paused",
    EventKind.PROCESSES_ENDED: "stopped",
    EventKind.FILES_REMOVED: "archived",
    EventKind.LOST: "lost with its host",
}


#: Heartbeats are not stored in the stream: only their absence matters, and only now.
HEARTBEAT_KIND = "heartbeat"
ALL_HEARTBEATS = f"machine.{HEARTBEAT_KIND}.*"


def heartbeat(machine_id: str) -> str:
    """``machine.heartbeat.<machineId>``: published by the daemon every few seconds."""
    return f"machine.{HEARTBEAT_KIND}.{machine_id}"


#: The queue group of a host's provisioner replicas on its control subject: one answers.
HOST_RPC_QUEUE = "provisioner"


def host_rpc(host_id: str) -> str:
    """Where the provisioners of host ``host_id`` serve the host methods (contracts.host.rpc):
    what only a machine's own host can do. Characters a subject token may not have (``.``,
    spaces, wildcards) become ``_``."""
    return f"host.{re.sub(r'[^A-Za-z0-9_@-]', '_', host_id)}.rpc"


def daemon_rpc(machine_id: str) -> str:
    """Where a machine's daemon serves JSON-RPC (request/reply)."""
    return f"daemon.{machine_id}.rpc"


def exec_output(machine_id: str, stream_id: str) -> str:
    """Where a daemon publishes a streamed command's output chunks (core NATS, not stored).
    ``stream_id="*"``: every stream of that machine (its publish permission)."""
    return f"daemon.{machine_id}.output.{stream_id}"


def stream_from_machine(machine_id: str, stream_id: str) -> str:
    """Where a machine's daemon publishes its side of a byte stream (data, credit, end, abort;
    see contracts.daemon.streams). ``stream_id="*"``: every stream of that machine (its publish
    permission). Only that machine may publish here."""
    return f"daemon.{machine_id}.bytes-out.{stream_id}"


def stream_to_machine(machine_id: str, stream_id: str) -> str:
    """Where the platform publishes its side of a machine's byte stream; the daemon subscribes
    to ``stream_id="*"``. Only the platform may publish here: no machine may, its own included."""
    return f"daemon.{machine_id}.bytes-in.{stream_id}"


def machine_inbox_prefix(machine_id: str) -> str:
    """A machine's private reply inbox prefix (so its replies cannot be read by other machines)."""
    return f"_INBOX_{machine_id}"


# --- codemode (see contracts.gateway.codemode) ----------------------------------------------------
#: Run jobs, shared by the codemode replicas through the queue group ``CODEMODE_QUEUE``.
CODEMODE_RUN = "codemode.run"
CODEMODE_DESCRIBE = "codemode.describe"
CODEMODE_QUEUE = "codemode"
#: Every run's events (``codemode.<runId>.event``).
ALL_CODEMODE_EVENTS = "codemode.*.event"


def codemode_events(run_id: str) -> str:
    return f"codemode.{run_id}.event"


def codemode_tool(run_id: str) -> str:
    """Where the gateway that started a run performs its ``fleet``/``machine`` tool calls."""
    return f"codemode.{run_id}.tool"


def codemode_cancel(run_id: str) -> str:
    return f"codemode.{run_id}.cancel"


# --- between gateway replicas --------------------------------------------------------------
#: Core NATS, not stored: a gateway wrote a change to what a caller may do (a user disabled or
#: enabled, a role changed, a session ended, a token revoked); every gateway forgets the callers
#: it keeps and runs its revocation round at once (``contracts.people.CallersChanged``). Sent
#: and read on the gateway's audit-account connection, an account no machine and no other
#: service is in (``fleet.up.embedded.NatsAuth``).
CALLERS_CHANGED = "gateway.callers-changed"


# --- NATS server subjects fleetd's configuration and services name ----------------------------
#: Every process's default reply inbox (the services' and the callout's).
ALL_INBOXES = "_INBOX.>"
#: The monitor user's private reply inbox (it must connect with this ``inbox_prefix``).
MONITOR_INBOX_PREFIX = "_INBOX_monitor"
#: Where the server asks the auth callout service to decide on a connection.
AUTH_CALLOUT = "$SYS.REQ.USER.AUTH"
#: Every server answers with the connections of the requester's account.
ACCOUNT_CONNZ = "$SYS.REQ.ACCOUNT.PING.CONNZ"
#: Read-only JetStream API of the event stream: its info and stored messages.
STREAM_INFO_API = f"$JS.API.STREAM.INFO.{STREAM_NAME}"
STREAM_MSG_GET_API = f"$JS.API.STREAM.MSG.GET.{STREAM_NAME}"


def server_kick(server_id: str) -> str:
    """The server request that closes one client connection (``*``: any server's)."""
    return f"$SYS.REQ.SERVER.{server_id}.KICK"
