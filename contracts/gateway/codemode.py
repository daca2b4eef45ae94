"""Codemode: run Python in a sandbox against the fleet's tools. Methods, run events, jobs.

The gateway's methods (``codemode.*``) are declared here and listed in
``contracts.gateway.rpc.GATEWAY_METHODS``. Between the gateway and the codemode service:

- ``subjects.CODEMODE_RUN`` (queue group): a ``RunJob``, answered with ``RunOutcome``
  when the run ends;
- ``subjects.codemode_tool(runId)``: the service asks the gateway that started the run to
  perform a ``fleet``/``machine`` tool call (a JSON-RPC request answered by the gateway's own
  dispatcher with the caller's rights: no token ever leaves the gateway);
- ``subjects.codemode_events(runId)``: the run's ``RunEvent``s, in ``seq`` order;
- ``subjects.codemode_cancel(runId)``: ends the run (answered by the replica running it);
- ``subjects.CODEMODE_DESCRIBE`` (queue group): a ``DescribeJob``, answered with ``Stubs``.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from contracts.errors import (
    CodemodeUnavailable,
    FleetError,
    Forbidden,
    InvalidParams,
    NotFound,
)
from contracts.ids import ID_LENGTH, INSTANCE_ID_RE, MACHINE_ID_RE
from contracts.rpc.jsonrpc import ClientMethod, MethodSpec, Params, Result

MAX_CODE_BYTES = 256 * 1024
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 300.0
RUN_ID_PATTERN = r"^run-[0-9a-f]{16}$"
#: Provider names an OpenAPI or MCP bridge may take (a Python identifier, not a built-in one).
BRIDGE_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
BUILTIN_PROVIDERS = ("fleet", "machine")
#: The gateway's HTTP paths for codemode: the live run (SSE) and MCP (streamable HTTP).
RUN_STREAM_PATH = "/codemode/run"
#: The run stream's last SSE event: its data is the ``codemode.run`` result or ``{"error"}``.
RUN_STREAM_END = "end"
MCP_PATH = "/mcp"

RunStatus = Literal["ok", "error", "timeout", "cancelled"]
RecordStatus = Literal["running", "ok", "error", "timeout", "cancelled"]
RunId = Annotated[str, msgspec.Meta(pattern=RUN_ID_PATTERN)]
_InstanceId = Annotated[
    str, msgspec.Meta(pattern=INSTANCE_ID_RE.pattern, min_length=ID_LENGTH, max_length=ID_LENGTH)
]
_MachineId = Annotated[
    str, msgspec.Meta(pattern=MACHINE_ID_RE.pattern, min_length=ID_LENGTH, max_length=ID_LENGTH)
]
BridgeName = Annotated[str, msgspec.Meta(pattern=BRIDGE_NAME_PATTERN)]


def now() -> datetime:
    return datetime.now(UTC)


class RunParams(Params, kw_only=True):
    code: Annotated[str, msgspec.Meta(max_length=MAX_CODE_BYTES)]
    #: The machine ``machine`` is bound to (and whose instance the run belongs to).
    machine_id: _MachineId | None = None
    #: The instance whose bridges the run gets (default: the machine's, or the token's).
    instance_id: _InstanceId | None = None
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=MAX_TIMEOUT_S)] = DEFAULT_TIMEOUT_S


class RunResult(Result, kw_only=True):
    run_id: str
    status: RunStatus
    #: The value of the code's last expression (JSON), or null.
    result: Any = None
    error: str | None = None
    logs: list[str] = msgspec.field(default_factory=list)


class RunRef(Params, kw_only=True):
    run_id: RunId


class Cancelled(Result, kw_only=True):
    #: False: the run had already ended (or no replica is running it).
    cancelled: bool


class ListRunsParams(Params, kw_only=True):
    instance_id: _InstanceId | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=500)] = 50


class RunRecord(Result, kw_only=True):
    run_id: str
    status: RecordStatus
    instance_id: str | None = None
    machine_id: str | None = None
    token_id: str
    started_at: datetime
    duration_ms: int | None = None
    result: Any = None
    error: str | None = None
    logs: list[str] = msgspec.field(default_factory=list)


class RunList(Result, kw_only=True):
    runs: list[RunRecord]


class DescribeParams(Params, kw_only=True):
    #: Provider names; omitted: every provider a run would get.
    providers: list[Annotated[str, msgspec.Meta(max_length=64)]] | None = None
    machine_id: _MachineId | None = None
    instance_id: _InstanceId | None = None


class Stubs(Result, kw_only=True):
    #: Provider name -> Python type stubs (``.pyi`` text).
    stubs: dict[str, str]


class _Bridge(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True,
              tag_field="kind"):  # fmt: skip
    name: BridgeName


class OpenApiBridge(_Bridge, tag="openapi", kw_only=True):
    spec_url: Annotated[str, msgspec.Meta(pattern=r"^https?://", max_length=2048)]
    base_url: Annotated[str, msgspec.Meta(pattern=r"^https?://", max_length=2048)]
    #: Sent as ``Authorization`` on every call; stored encrypted, never shown again.
    authorization: str | None = None


class McpBridge(_Bridge, tag="mcp", kw_only=True):
    #: A streamable-HTTP MCP server.
    url: Annotated[str, msgspec.Meta(pattern=r"^https?://", max_length=2048)]
    authorization: str | None = None


class SetBridgeParams(Params, kw_only=True):
    instance_id: _InstanceId
    openapi: OpenApiBridge | None = None
    mcp: McpBridge | None = None

    def __post_init__(self) -> None:
        if (self.openapi is None) == (self.mcp is None):
            raise ValueError("exactly one of field `openapi` and field `mcp` must be given")
        name = (self.openapi or self.mcp).name  # type: ignore[union-attr]
        if name in BUILTIN_PROVIDERS:
            raise ValueError(f"field `name` cannot be {name!r}: a built-in provider's name")

    @property
    def bridge(self) -> OpenApiBridge | McpBridge:
        found = self.openapi or self.mcp
        assert found is not None
        return found


class BridgeInfo(Result, kw_only=True):
    name: str
    kind: Literal["openapi", "mcp"]
    url: str
    has_authorization: bool


class BridgeRef(Params, kw_only=True):
    instance_id: _InstanceId
    name: BridgeName


class BridgeList(Result, kw_only=True):
    bridges: list[BridgeInfo]


class BridgeListParams(Params, kw_only=True):
    instance_id: _InstanceId


class BridgeRemoved(Result, kw_only=True):
    removed: bool


_NF: tuple[type[FleetError], ...] = (NotFound, Forbidden)
_RUN: tuple[type[FleetError], ...] = (NotFound, Forbidden, InvalidParams, CodemodeUnavailable)

CODEMODE_RUN = MethodSpec(
    "codemode.run",
    RunParams,
    RunResult,
    "Run Python in a sandbox against the tools.",
    _RUN,
    scope="machines:exec",
    budget="exec",
    hand_written=True,
    in_code=False,
)
CODEMODE_CANCEL = MethodSpec(
    "codemode.cancel",
    RunRef,
    Cancelled,
    "Cancel a running run.",
    _NF,
    scope="machines:exec",
    client=ClientMethod("code_cancel", "run_id", unwrap="cancelled"),
    in_code=False,
)
CODEMODE_LIST = MethodSpec(
    "codemode.list",
    ListRunsParams,
    RunList,
    "Kept run records, newest first.",
    _NF,
    scope="machines:exec",
    reads=True,
    client=ClientMethod("code_list", "instance_id limit", unwrap="runs"),
    in_code=False,
)
CODEMODE_DESCRIBE = MethodSpec(
    "codemode.describe",
    DescribeParams,
    Stubs,
    "Python stubs of the run's providers.",
    _RUN,
    scope="machines:exec",
    reads=True,
    client=ClientMethod("code_describe", "providers", unwrap="stubs"),
    in_code=False,
)
CODEMODE_BRIDGES_SET = MethodSpec(
    "codemode.bridges.set",
    SetBridgeParams,
    BridgeInfo,
    "Add or replace a bridge.",
    _NF,
    scope="env:write",
    hand_written=True,
    in_code=False,
)
CODEMODE_BRIDGES_LIST = MethodSpec(
    "codemode.bridges.list",
    BridgeListParams,
    BridgeList,
    "An instance's bridges.",
    _NF,
    scope="env:read",
    reads=True,
    client=ClientMethod("code_bridges", "instance_id", unwrap="bridges"),
    in_code=False,
)
CODEMODE_BRIDGES_REMOVE = MethodSpec(
    "codemode.bridges.remove",
    BridgeRef,
    BridgeRemoved,
    "Remove a bridge.",
    _NF,
    scope="env:write",
    client=ClientMethod("code_remove_bridge", "instance_id name", unwrap="removed"),
    in_code=False,
)

CODEMODE_METHODS = (
    CODEMODE_RUN,
    CODEMODE_CANCEL,
    CODEMODE_LIST,
    CODEMODE_DESCRIBE,
    CODEMODE_BRIDGES_SET,
    CODEMODE_BRIDGES_LIST,
    CODEMODE_BRIDGES_REMOVE,
)


# --- run events: JSON on ``codemode.<runId>.event`` -------------------------------------------
class _RunEvent(msgspec.Struct, rename="camel", kw_only=True, tag_field="type"):
    run_id: str
    #: 1, 2, 3, ... within one run: a watcher sees a gap when it missed an event.
    seq: int
    at: datetime = msgspec.field(default_factory=now)


class RunStarted(_RunEvent, tag="started", kw_only=True):
    instance_id: str | None = None
    machine_id: str | None = None
    providers: list[str]


class RunLog(_RunEvent, tag="log", kw_only=True):
    stream: Literal["stdout", "stderr", "system"]
    line: str


class RunToolCall(_RunEvent, tag="toolCall", kw_only=True):
    call_id: int
    provider: str
    path: str


class RunToolResult(_RunEvent, tag="toolResult", kw_only=True):
    call_id: int
    ok: bool
    duration_ms: float
    #: The JSON-RPC error code when ``ok`` is false.
    code: int | None = None
    message: str | None = None


class RunResultEvent(_RunEvent, tag="result", kw_only=True):
    result: Any = None
    duration_ms: int


class RunError(_RunEvent, tag="error", kw_only=True):
    status: Literal["error", "timeout"]
    error: str
    duration_ms: int


class RunCancelled(_RunEvent, tag="cancelled", kw_only=True):
    duration_ms: int


RunEvent = (
    RunStarted | RunLog | RunToolCall | RunToolResult | RunResultEvent | RunError | RunCancelled
)


# --- gateway <-> codemode service -------------------------------------------------------------
class RunJob(msgspec.Struct, rename="camel", kw_only=True):
    run_id: str
    code: str
    timeout_s: float
    token_id: str
    instance_id: str | None = None
    machine_id: str | None = None


class RunOutcome(msgspec.Struct, rename="camel", kw_only=True):
    """The service's answer to a ``RunJob``: the result, or the error it could not run with."""

    result: RunResult | None = None
    error: dict[str, Any] | None = None


class DescribeJob(msgspec.Struct, rename="camel", kw_only=True):
    providers: list[str] | None = None
    instance_id: str | None = None
    machine_id: str | None = None


class DescribeOutcome(msgspec.Struct, rename="camel", kw_only=True):
    stubs: Stubs | None = None
    error: dict[str, Any] | None = None


def new_run_id() -> str:
    return f"run-{secrets.token_hex(8)}"
