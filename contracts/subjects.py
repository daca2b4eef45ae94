"""NATS subject names. Nothing outside contracts/ spells a subject string."""

from __future__ import annotations

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
    ARCHIVED = "archived"
    UNRESPONSIVE = "unresponsive"


#: Subjects captured by the stream: every kind above, for any machine.
STREAM_SUBJECTS: tuple[str, ...] = tuple(f"machine.{k.value}.*" for k in EventKind)

#: What a monitor subscribes to in order to see every event (`nats sub 'machine.>'`).
ALL_MACHINE_EVENTS = "machine.>"


def event(kind: EventKind, machine_id: str) -> str:
    """``machine.<kind>.<machineId>``"""
    return f"machine.{kind.value}.{machine_id}"


def event_filter(kind: EventKind) -> str:
    """Every machine's events of one kind, for a consumer's filter subject."""
    return f"machine.{kind.value}.*"


def machine_events(machine_id: str) -> str:
    """Every event of one machine."""
    return f"machine.*.{machine_id}"


#: Heartbeats are not stored in the stream: only their absence matters, and only now.
HEARTBEAT_KIND = "heartbeat"
ALL_HEARTBEATS = f"machine.{HEARTBEAT_KIND}.*"


def heartbeat(machine_id: str) -> str:
    """``machine.heartbeat.<machineId>``: published by the daemon every few seconds."""
    return f"machine.{HEARTBEAT_KIND}.{machine_id}"


def daemon_rpc(machine_id: str) -> str:
    """Where a machine's daemon serves JSON-RPC (request/reply)."""
    return f"daemon.{machine_id}.rpc"


def machine_inbox_prefix(machine_id: str) -> str:
    """A machine's private reply inbox prefix (so its replies cannot be read by other machines)."""
    return f"_INBOX_{machine_id}"


# --- codemode (see contracts.codemode) ---------------------------------------------------------
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
