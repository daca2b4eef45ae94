"""The AsyncAPI 3.0 document of fleetd's NATS traffic, generated from contracts/.

Channels: every machine event subject (stored in the JetStream stream), the daemons' heartbeats
(core NATS, never stored) and each daemon's JSON-RPC subject (request/reply, signed headers).
Payload schemas come from the msgspec structs, so they are camelCase exactly as on the wire.

The committed copy, ``docs/asyncapi.json``, is written by ``python -m codegen``
(``codegen/asyncapi.py``) with the other generated files.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version as _pkg_version
from typing import Any

import msgspec

from contracts.bus import events, subjects
from contracts.bus.subjects import ConfigKind, EventKind
from contracts.daemon import signing
from contracts.daemon.rpc import DAEMON_METHODS
from contracts.errors import ERRORS
from contracts.gateway import audit
from contracts.rpc.json_schema import schema_components
from contracts.rpc.jsonrpc import AnySpec

ASYNCAPI_VERSION = "3.0.0"
_MID = "{machineId}"
_REF = "#/components/schemas/{name}"

#: Who publishes each event kind: documentation only, the subjects and payloads are generated.
PUBLISHERS: dict[EventKind, str] = {
    EventKind.CREATED: "the gateway (machines.create, machines.rebuild)",
    EventKind.PROVISIONED: "the provisioner, once the machine is started",
    EventKind.DAEMON_STATUS_REPORTED: "the machine's daemon, on start (ready) and shutdown",
    EventKind.SETUP_PUSHED: "the setup_pusher, after writing .env and cloning the repos",
    EventKind.READY: "the prober, when every readiness check passes",
    EventKind.FAILED: "whichever stage gave up (provision, boot, setup, probe)",
    EventKind.ARCHIVED: "the gateway (machines.archive, machines.rebuild): its status is "
    "then archiving",
    EventKind.FILES_REMOVED: "the provisioner of the machine's host, once an archiving "
    "machine's processes have exited and its files are gone (its status is then archived)",
    EventKind.UNRESPONSIVE: "the prober, when a ready machine's heartbeats stop",
    EventKind.ENV_PUSHED: "the setup_pusher, after pushing a changed env to a running machine",
    EventKind.REPOS_RECONCILED: "the setup_pusher, after reconciling a running machine's repos",
    EventKind.STOPPED: "the gateway (machines.stop) or the prober (auto-stop of an idle machine)",
    EventKind.PROCESSES_ENDED: "the provisioner, once every process of a stopping machine "
    "has exited (its status is then stopped)",
    EventKind.STARTED: "the gateway (machines.start), for a stopped machine",
    EventKind.PAUSE_REQUESTED: "the gateway (machines.pause), for a ready gvisor machine",
    EventKind.PAUSED: "the provisioner, once a pausing machine is on disk and its sandbox gone "
    "(its status is then paused)",
    EventKind.PAUSE_REFUSED: "the provisioner, when a pause is refused before the sandbox was "
    "touched (its status is then ready again)",
    EventKind.RESUME_REQUESTED: "the gateway (machines.resume), for a paused machine",
    EventKind.RESUMED: "the provisioner, once a resuming machine is restored (its status is "
    "then ready)",
    EventKind.LOST: "the prober, for each running machine of a host that stopped heartbeating",
    EventKind.EGRESS_DENIED: "the machine's host (its DNS proxy), when its network policy "
    "refused a name (rate-limited per machine)",
    EventKind.LIFECYCLE_RAN: "the setup_pusher, after each devcontainer lifecycle command",
    EventKind.LIFECYCLE_OUTPUT: "the setup_pusher (the gateway for postAttachCommand), while a "
    "devcontainer lifecycle command runs: its output, batched",
    EventKind.ENVIRONMENT_BUILD_OUTPUT: "the provisioner, while the machine's environment "
    "builds: the build log, batched",
    EventKind.SECRET_USED: "the egress proxy of the machine's host, on the machine's first "
    "request sent with a secret added (its name and host, never its value); the gateway "
    "audits it",
}
CONFIG_PUBLISHERS: dict[ConfigKind, str] = {
    ConfigKind.ENV_CHANGED: "the gateway (env.set, env.unset)",
    ConfigKind.REPOS_CHANGED: "the gateway (repos.add, repos.remove)",
}
_CONFIG_TYPES: dict[ConfigKind, type[msgspec.Struct]] = {
    ConfigKind.ENV_CHANGED: events.EnvChanged,
    ConfigKind.REPOS_CHANGED: events.ReposChanged,
}
_SCOPE = "{scope}"
_SCOPE_PARAM = {
    "scope": {
        "description": f"An instance id (`i-` and 16 hex digits) or `{subjects.PLATFORM_SCOPE}`."
    }
}

_EVENT_TYPES: dict[EventKind, type[msgspec.Struct]] = {
    EventKind.CREATED: events.MachineCreated,
    EventKind.PROVISIONED: events.MachineProvisioned,
    EventKind.DAEMON_STATUS_REPORTED: events.DaemonStatusReported,
    EventKind.SETUP_PUSHED: events.SetupPushed,
    EventKind.READY: events.MachineReady,
    EventKind.FAILED: events.MachineFailed,
    EventKind.ARCHIVED: events.MachineArchived,
    EventKind.FILES_REMOVED: events.MachineFilesRemoved,
    EventKind.UNRESPONSIVE: events.MachineUnresponsive,
    EventKind.ENV_PUSHED: events.EnvPushed,
    EventKind.REPOS_RECONCILED: events.ReposReconciled,
    EventKind.STOPPED: events.MachineStopped,
    EventKind.PROCESSES_ENDED: events.MachineProcessesEnded,
    EventKind.STARTED: events.MachineStarted,
    EventKind.PAUSE_REQUESTED: events.MachinePauseRequested,
    EventKind.PAUSED: events.MachinePaused,
    EventKind.PAUSE_REFUSED: events.MachinePauseRefused,
    EventKind.RESUME_REQUESTED: events.MachineResumeRequested,
    EventKind.RESUMED: events.MachineResumed,
    EventKind.LOST: events.MachineLost,
    EventKind.EGRESS_DENIED: events.MachineEgressDenied,
    EventKind.LIFECYCLE_RAN: events.LifecycleRan,
    EventKind.LIFECYCLE_OUTPUT: events.LifecycleOutput,
    EventKind.ENVIRONMENT_BUILD_OUTPUT: events.EnvironmentBuildOutput,
    EventKind.SECRET_USED: events.MachineSecretUsed,
}


def package_version() -> str:
    try:
        return _pkg_version("fleetd")
    except PackageNotFoundError:
        return "0+unknown"


def asyncapi_document(
    *, version: str | None = None, methods: Sequence[AnySpec] = DAEMON_METHODS
) -> dict[str, Any]:
    """The whole document; deterministic, so the committed copy can be compared to it."""
    types: list[Any] = [_EVENT_TYPES[k] for k in EventKind] + [events.Heartbeat]
    types += [_CONFIG_TYPES[k] for k in ConfigKind] + [audit.AuditEntry]
    types += [m.params for m in methods] + [m.result for m in methods]
    _, schemas = schema_components(types, ref_template=_REF)
    schemas = _discriminators(schemas)
    schemas["JsonRpcError"] = _JSONRPC_ERROR
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    _event_channels(channels, operations, messages)
    _config_channels(channels, operations, messages)
    _heartbeat_channel(channels, operations, messages)
    _audit_channel(channels, operations, messages)
    _daemon_rpc_channels(channels, operations, messages, methods)
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "fleetd NATS subjects",
            "version": version or package_version(),
            "description": _INFO,
        },
        "defaultContentType": "application/json",
        "servers": {"nats": _SERVER},
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": schemas,
            "securitySchemes": {"userPassword": _USER_PASSWORD},
        },
    }


_INFO = (
    "Every machine event is an ordinary NATS message on `machine.<type>.<machineId>`, stored in "
    f"the JetStream stream `{subjects.STREAM_NAME}` (subscribe to `{subjects.ALL_MACHINE_EVENTS}`"
    " to see them all); changes of an instance's (or the platform's) configuration on "
    "`config.<type>.<scope>` in the same stream. Daemons beat on "
    "`machine.heartbeat.<machineId>` (core NATS only) and serve JSON-RPC 2.0 on "
    "`daemon.<machineId>.rpc` by request/reply. Generated from contracts/."
)
_SERVER = {
    "host": "127.0.0.1:4222",
    "protocol": "nats",
    "description": "Any NATS server with JetStream (`fleet up` embeds one on a free port and "
    "prints its URL). Every connection authenticates: services and the monitor with static "
    "users, machines as user `<machineId>` with their token, through the auth callout.",
    "security": [{"$ref": "#/components/securitySchemes/userPassword"}],
}
_USER_PASSWORD = {
    "type": "userPassword",
    "description": "NATS user and password (see docs/monitoring.md for the read-only monitor).",
}
_MACHINE_PARAM = {"machineId": {"description": "The machine's id: `m-` and 16 hex digits."}}
_EVENT_HEADERS = {
    "type": "object",
    "properties": {
        "Nats-Msg-Id": {
            "type": "string",
            "description": "The event's eventId: JetStream drops a duplicate publish.",
        }
    },
}
_JSONRPC_ERROR = {
    "title": "JsonRpcError",
    "type": "object",
    "properties": {
        "code": {"type": "integer", "enum": sorted(ERRORS)},
        "message": {"type": "string"},
        "data": {"type": "object"},
    },
    "required": ["code", "message"],
}


def _event_channels(channels: dict[str, Any], ops: dict[str, Any], msgs: dict[str, Any]) -> None:
    for kind in EventKind:
        _stored_channel(channels, ops, msgs, _EVENT_TYPES[kind].__name__, f"machine.{kind.value}",
                        subjects.event(kind, _MID), _MACHINE_PARAM,
                        f"Published by {PUBLISHERS[kind]}.", "A stage or a monitor")  # fmt: skip


def _config_channels(channels: dict[str, Any], ops: dict[str, Any], msgs: dict[str, Any]) -> None:
    for kind in ConfigKind:
        _stored_channel(channels, ops, msgs, _CONFIG_TYPES[kind].__name__, f"config.{kind.value}",
                        f"config.{kind.value}.{_SCOPE}", _SCOPE_PARAM,
                        f"Published by {CONFIG_PUBLISHERS[kind]}.", "The setup_pusher")  # fmt: skip


def _stored_channel(
    channels: dict[str, Any], ops: dict[str, Any], msgs: dict[str, Any], name: str,
    channel_id: str, address: str, parameters: dict[str, Any], summary: str, reader: str,
) -> None:  # fmt: skip
    """One event kind of the JetStream stream: its message, channel and receive operation."""
    msgs[name] = {
        "name": name,
        "title": channel_id,
        "summary": summary,
        "headers": _EVENT_HEADERS,
        "payload": {"$ref": _REF.format(name=name)},
    }
    channels[channel_id] = {
        "address": address,
        "description": f"Stored in the JetStream stream `{subjects.STREAM_NAME}`.",
        "parameters": parameters,
        "messages": {name: {"$ref": f"#/components/messages/{name}"}},
    }
    ops[f"receive.{channel_id}"] = {
        "action": "receive",
        "summary": f"{reader} reads `{channel_id}` events.",
        "channel": {"$ref": f"#/channels/{channel_id}"},
        "messages": [{"$ref": f"#/channels/{channel_id}/messages/{name}"}],
    }


def _heartbeat_channel(channels: dict[str, Any], ops: dict[str, Any], msgs: dict[str, Any]) -> None:
    msgs["Heartbeat"] = {
        "name": "Heartbeat",
        "summary": 'A daemon\'s periodic "still here"; only its absence matters.',
        "payload": {"$ref": _REF.format(name="Heartbeat")},
    }
    channels["machine.heartbeat"] = {
        "address": subjects.heartbeat(_MID),
        "description": "Core NATS only: not stored in the stream.",
        "parameters": _MACHINE_PARAM,
        "messages": {"Heartbeat": {"$ref": "#/components/messages/Heartbeat"}},
    }
    ops["receive.machine.heartbeat"] = {
        "action": "receive",
        "summary": "The prober watches heartbeats to mark machines unresponsive.",
        "channel": {"$ref": "#/channels/machine.heartbeat"},
        "messages": [{"$ref": "#/channels/machine.heartbeat/messages/Heartbeat"}],
    }


def _audit_channel(channels: dict[str, Any], ops: dict[str, Any], msgs: dict[str, Any]) -> None:
    msgs["AuditEntry"] = {
        "name": "AuditEntry",
        "summary": "Published by the gateway only (docs/audit.md): one audited action.",
        "payload": {"$ref": _REF.format(name="AuditEntry")},
    }
    channels["audit"] = {
        "address": "audit.{scope}.{machine}",
        "description": f"Stored in the JetStream stream `{audit.AUDIT_STREAM}`, in an account "
        "of its own that only the gateway's audit credential reaches.",
        "parameters": _SCOPE_PARAM
        | {"machine": {"description": f"A machine id, or `{audit.NO_MACHINE}`."}},
        "messages": {"AuditEntry": {"$ref": "#/components/messages/AuditEntry"}},
    }
    ops["receive.audit"] = {
        "action": "receive",
        "summary": "The gateway reads entries for audit.list.",
        "channel": {"$ref": "#/channels/audit"},
        "messages": [{"$ref": "#/channels/audit/messages/AuditEntry"}],
    }


def _daemon_rpc_channels(
    channels: dict[str, Any],
    ops: dict[str, Any],
    msgs: dict[str, Any],
    methods: Sequence[AnySpec],
) -> None:
    requests: dict[str, Any] = {}
    replies: dict[str, Any] = {}
    for spec in methods:
        base = "".join(part[:1].upper() + part[1:] for part in spec.name.split("."))
        msgs[f"{base}Request"] = _request_message(spec)
        msgs[f"{base}Response"] = _response_message(spec)
        requests[f"{base}Request"] = {"$ref": f"#/components/messages/{base}Request"}
        replies[f"{base}Response"] = {"$ref": f"#/components/messages/{base}Response"}
    channels["daemon.rpc"] = {
        "address": subjects.daemon_rpc(_MID),
        "description": "The machine's daemon serves JSON-RPC 2.0 here (NATS request/reply). "
        "Only the platform may publish; each machine may only subscribe to its own.",
        "parameters": _MACHINE_PARAM,
        "messages": requests,
    }
    channels["daemon.rpc.reply"] = {
        "address": None,
        "description": "The requester's reply inbox (the NATS reply subject of the request).",
        "messages": replies,
    }
    ops["send.daemon.rpc"] = {
        "action": "send",
        "summary": "The platform calls a daemon method and waits for the answer.",
        "channel": {"$ref": "#/channels/daemon.rpc"},
        "messages": [{"$ref": f"#/channels/daemon.rpc/messages/{n}"} for n in requests],
        "reply": {
            "address": {"location": "$message.header#/replyTo"},
            "channel": {"$ref": "#/channels/daemon.rpc.reply"},
            "messages": [{"$ref": f"#/channels/daemon.rpc.reply/messages/{n}"} for n in replies],
        },
    }


_SIGNED_HEADERS = {
    "type": "object",
    "description": "HMAC-SHA256 signature over the machine id, these headers and the exact body, "
    "keyed by a key derived from the machine's token (contracts/daemon/signing.py).",
    "properties": {
        signing.H_ID: {"type": "string", "description": "Unique per request (replay check)."},
        signing.H_ISSUED: {"type": "string", "description": "Issue time, Unix seconds."},
        signing.H_TTL: {"type": "string", "description": "Seconds the request stays valid."},
        signing.H_SIG: {"type": "string", "description": "Hex HMAC-SHA256."},
    },
    "required": [signing.H_ID, signing.H_ISSUED, signing.H_TTL, signing.H_SIG],
}


def _discriminators(node: Any) -> Any:
    """A tagged union's ``discriminator`` as AsyncAPI's Schema Object has it: the name of the
    tag's property (msgspec writes OpenAPI's object, with its mapping)."""
    if isinstance(node, dict):
        return {k: v["propertyName"] if k == "discriminator" and isinstance(v, dict)
                else _discriminators(v) for k, v in node.items()}  # fmt: skip
    if isinstance(node, list):
        return [_discriminators(v) for v in node]
    return node


def _request_message(spec: AnySpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "title": f"{spec.name} request",
        "summary": spec.summary,
        "headers": _SIGNED_HEADERS,
        "payload": {
            "type": "object",
            "properties": {
                "jsonrpc": {"const": "2.0"},
                "id": {"type": ["integer", "string"]},
                "method": {"const": spec.name},
                "params": {"$ref": _REF.format(name=spec.params.__name__)},
            },
            "required": ["jsonrpc", "id", "method", "params"],
        },
    }


def _response_message(spec: AnySpec) -> dict[str, Any]:
    result = schema_components([spec.result], ref_template=_REF)[0][0]
    codes = sorted({e.code for e in spec.errors})
    return {
        "name": f"{spec.name} response",
        "title": f"{spec.name} response",
        "summary": f"The result, or an error (codes the method documents: {codes}; any "
        "JSON-RPC protocol error is possible too).",
        "payload": {
            "type": "object",
            "properties": {
                "jsonrpc": {"const": "2.0"},
                "id": {"type": ["integer", "string", "null"]},
                "result": result,
                "error": {"$ref": _REF.format(name="JsonRpcError")},
            },
            "required": ["jsonrpc", "id"],
            "oneOf": [{"required": ["result"]}, {"required": ["error"]}],
        },
    }
