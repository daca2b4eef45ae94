"""The daemon's JSON-RPC methods, served on ``daemon.<machineId>.rpc`` (NATS request/reply)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from contracts.errors import DaemonTimeout, DaemonUnavailable, InvalidParams, ToolError
from contracts.jsonrpc import MethodSpec, NoParams, Params, Result
from contracts.validation import check_env_name

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
DEFAULT_EXEC_TIMEOUT_S = 120.0
MAX_EXEC_TIMEOUT_S = 3600.0


class WriteFileParams(Params, kw_only=True):
    #: ``~`` and relative paths resolve against the machine's home.
    path: NonEmpty
    content: str
    mode: Annotated[int, msgspec.Meta(ge=0, le=0o7777)] = 0o644


class WriteFileResult(Result, kw_only=True):
    path: str
    bytes_written: int


class ExecCommandParams(Params, kw_only=True):
    #: argv: the first element is the program; never run through a shell.
    command: Annotated[list[str], msgspec.Meta(min_length=1)]
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=MAX_EXEC_TIMEOUT_S)] = DEFAULT_EXEC_TIMEOUT_S
    cwd: str | None = None
    env: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if not self.command[0]:
            raise ValueError("field `command` must start with a program name")
        for name in self.env or {}:
            check_env_name(name, "env")


class ExecCommandResult(Result, kw_only=True):
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False
    #: True when stdout or stderr was longer than the daemon's output cap and was cut.
    truncated: bool = False


class GetVersionResult(Result, kw_only=True):
    version: str
    git_sha: str | None


class HealthResult(Result, kw_only=True):
    ok: bool
    uptime_s: float


_UNREACHABLE = (DaemonUnavailable, DaemonTimeout, InvalidParams, ToolError)

WRITE_FILE = MethodSpec(
    "tool.writeFile",
    WriteFileParams,
    WriteFileResult,
    "Write a file on the machine (parents created, atomic, mode applied).",
    _UNREACHABLE,
)
EXEC_COMMAND = MethodSpec(
    "tool.execCommand",
    ExecCommandParams,
    ExecCommandResult,
    "Run an argv on the machine; killed on timeout.",
    _UNREACHABLE,
)
GET_VERSION = MethodSpec(
    "daemon.getVersion",
    NoParams,
    GetVersionResult,
    "The daemon's package version and the git SHA of its code.",
    _UNREACHABLE,
)
HEALTH = MethodSpec("daemon.health", NoParams, HealthResult, "Liveness and uptime.", _UNREACHABLE)

DAEMON_METHODS: tuple[MethodSpec, ...] = (WRITE_FILE, EXEC_COMMAND, GET_VERSION, HEALTH)
