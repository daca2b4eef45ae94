"""The daemon's JSON-RPC methods, served on ``daemon.<machineId>.rpc`` (NATS request/reply)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from contracts.daemon import sessions as ss
from contracts.daemon.code import CODE_METHODS
from contracts.daemon.desktop import DESKTOP_METHODS
from contracts.daemon.exec_limits import (
    DEFAULT_EXEC_TIMEOUT_S as DEFAULT_EXEC_TIMEOUT_S,
    MAX_EXEC_TIMEOUT_S as MAX_EXEC_TIMEOUT_S,
)
from contracts.daemon.files import FILE_METHODS
from contracts.daemon.streams import DEFAULT_CHUNK, DEFAULT_WINDOW, MAX_CHUNK, StreamOpened
from contracts.daemon.watch import WATCH_METHODS
from contracts.errors import (
    BadPath,
    Conflict,
    DaemonTimeout,
    DaemonUnavailable,
    InvalidParams,
    NotFound,
    NotSupported,
    ToolError,
    TooManyStreams,
)
from contracts.ports import LIST_PORTS, TUNNEL_CONNECT
from contracts.rpc.jsonrpc import AnySpec, MethodSpec, NoParams, Params, Result
from contracts.validation import (
    check_branch,
    check_checkout_path,
    check_env_name,
    check_repo_url,
)

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
DEFAULT_FILE_MODE = 0o644
#: The exit code of a command whose program the machine does not have (as a shell's).
EXIT_NOT_FOUND = 127
#: ``tool.gitClone``'s ``check_only`` exit code when ``path`` holds an unfinished clone of
#: ``url`` (its own repository, that origin, no index yet): one still running, or one cut
#: off. sysexits' EX_TEMPFAIL: no interpreter or argument error exits so.
EXIT_CLONE_UNFINISHED = 75
#: Files one ``daemon.health`` call checks at most.
HEALTH_MAX_FILES = 64


class WriteFileParams(Params, kw_only=True):
    #: ``~`` and relative paths resolve against the machine's home.
    path: NonEmpty
    content: str
    #: The permission bits only: no setuid, setgid or sticky bit from the platform.
    mode: Annotated[int, msgspec.Meta(ge=0, le=0o777)] = DEFAULT_FILE_MODE


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


class HealthParams(Params, kw_only=True):
    #: Paths (``~``/relative: under the home) that must be regular files: the prober's
    #: ``.env`` check without spawning ``test -f`` on the machine. Daemons before this field
    #: answer -32602 to it; the prober then falls back to the command.
    files: Annotated[list[Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]],
                     msgspec.Meta(max_length=HEALTH_MAX_FILES)] = []  # fmt: skip


class HealthResult(Result, kw_only=True):
    ok: bool
    uptime_s: float
    #: Those of ``files`` that are not regular files, in the order asked.
    missing: list[str] = []


#: ``never``: run once. ``on-env-change``: restarted when a new ``~/.fleet/.env`` lands.
#: ``always``: restarted whenever it exits, with backoff.
RestartPolicy = Literal["never", "on-env-change", "always"]
Tag = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
ProcessState = Literal["running", "exited", "lost"]


class ProcessStartParams(Params, kw_only=True):
    #: argv, as for tool.execCommand: never run through a shell.
    command: Annotated[list[str], msgspec.Meta(min_length=1)]
    cwd: str | None = None
    env: dict[str, str] | None = None
    #: A name to find the process by; unique among the machine's live processes.
    tag: Tag | None = None
    restart: RestartPolicy = "never"

    def __post_init__(self) -> None:
        if not self.command[0]:
            raise ValueError("field `command` must start with a program name")
        for name in self.env or {}:
            check_env_name(name, "env")


class ProcessRef(Params, kw_only=True):
    """Exactly one of ``pid`` and ``tag``."""

    pid: Annotated[int, msgspec.Meta(gt=0)] | None = None
    tag: Tag | None = None

    def __post_init__(self) -> None:
        if (self.pid is None) == (self.tag is None):
            raise ValueError("give exactly one of `pid` and `tag`")


class ProcessLogsParams(ProcessRef, kw_only=True):
    #: How many of the last lines to return.
    tail: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100


class ProcessInfo(Result, kw_only=True):
    pid: int
    tag: str | None
    command: list[str]
    cwd: str
    restart: RestartPolicy
    #: ``lost``: a process the daemon re-adopted after a restart and can no longer see.
    state: ProcessState
    exit_code: int | None = None
    #: How many times the daemon has restarted it (policy ``always`` or ``on-env-change``).
    restarts: int = 0
    started_at: float
    #: Where its stdout and stderr go (one file, appended), relative to the home.
    log_path: str


class ProcessList(Result, kw_only=True):
    processes: list[ProcessInfo]


class ProcessLogs(Result, kw_only=True):
    pid: int
    tag: str | None
    lines: list[str]


class SelfUpdateParams(Params, kw_only=True):
    #: The git SHA (or ref) of the code to run; it must already be installed on the machine.
    target_ref: Annotated[str, msgspec.Meta(pattern=r"^[0-9A-Za-z._/-]{1,200}$")]


class SelfUpdateResult(Result, kw_only=True):
    #: True: the daemon restarts in place after this answer, with the new code.
    restarting: bool
    from_git_sha: str | None
    to_git_sha: str | None


class GitCloneParams(Params, kw_only=True):
    """A clone of one branch of ``url`` into ``path`` (relative to the home), done by the
    daemon's own runtime: for an image that has no git."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    branch: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    path: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]
    timeout_s: Annotated[float, msgspec.Meta(gt=0, le=MAX_EXEC_TIMEOUT_S)] = DEFAULT_EXEC_TIMEOUT_S
    #: The repo's credentials (HTTP basic), for this clone only: never written to disk.
    username: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    password: Annotated[str, msgspec.Meta(max_length=8192)] | None = None
    #: Clone nothing: exit 0, the checked-out branch on stdout, if ``path`` is a finished
    #: checkout of ``url``; ``EXIT_CLONE_UNFINISHED`` if it is an unfinished one; else exit 1.
    check_only: bool = False

    def __post_init__(self) -> None:
        check_repo_url(self.url)
        check_branch(self.branch)
        check_checkout_path(self.path)


_UNREACHABLE = (DaemonUnavailable, DaemonTimeout, InvalidParams, ToolError, BadPath)
_PROCESS = (*_UNREACHABLE, NotFound, Conflict)

WRITE_FILE = MethodSpec(
    "tool.writeFile",
    WriteFileParams,
    WriteFileResult,
    "Write a file on the machine (parents created, atomic, mode applied).",
    _UNREACHABLE,
    wakes="files",
    at_once=True,
)
EXEC_COMMAND = MethodSpec(
    "tool.execCommand",
    ExecCommandParams,
    ExecCommandResult,
    "Run an argv on the machine; killed on timeout.",
    _UNREACHABLE,
    wakes="exec",
)
GIT_CLONE = MethodSpec(
    "tool.gitClone",
    GitCloneParams,
    ExecCommandResult,
    "Clone a repo's branch with the daemon's own runtime (an image with no git); a finished "
    "checkout of the same URL there already is left as it is. Killed on timeout.",
    _UNREACHABLE,
)
GET_VERSION = MethodSpec(
    "daemon.getVersion",
    NoParams,
    GetVersionResult,
    "The daemon's package version and the git SHA of its code.",
    _UNREACHABLE,
    at_once=True,
)
HEALTH = MethodSpec(
    "daemon.health", HealthParams, HealthResult,
    "Liveness and uptime; with files, which of them are missing.", _UNREACHABLE,
    at_once=True,
)  # fmt: skip

PROCESS_START = MethodSpec(
    "process.start",
    ProcessStartParams,
    ProcessInfo,
    "Start a background process; its pid is kept in the daemon's state file.",
    _PROCESS,
    wakes="process",
)
PROCESS_LIST = MethodSpec(
    "process.list", NoParams, ProcessList, "The background processes.", _UNREACHABLE, at_once=True
)
PROCESS_KILL = MethodSpec(
    "process.kill",
    ProcessRef,
    ProcessInfo,
    "Stop a background process (its whole process group): SIGTERM, then SIGKILL.",
    _PROCESS,
    wakes="process",
)
PROCESS_LOGS = MethodSpec(
    "process.logs", ProcessLogsParams, ProcessLogs, "The last lines of its output.", _PROCESS
)
SELF_UPDATE = MethodSpec(
    "daemon.selfUpdate",
    SelfUpdateParams,
    SelfUpdateResult,
    "Restart in place running the installed code at targetRef, keeping tracked processes.",
    (*_UNREACHABLE, NotFound, NotSupported),
)


class StopResult(Result, kw_only=True):
    #: True: the daemon is stopping (it reports ``stopping``, ends its processes, exits 0).
    stopping: bool


STOP = MethodSpec(
    "daemon.stop",
    NoParams,
    StopResult,
    "Stop for good after answering: report stopping, end the background processes, exit 0.",
    _UNREACHABLE,
)


# --- streaming and the daemon's own log ------------------------------------------------------
#: A stream's id: chosen by the caller, one subject token (``daemon.<machineId>.output.<id>``).
StreamId = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}$")]
OutputStream = Literal["stdout", "stderr"]


class ExecStreamParams(ExecCommandParams, kw_only=True):
    #: Output chunks go to ``subjects.exec_output(machineId, streamId)`` as they are read.
    stream_id: StreamId


class OutputChunk(msgspec.Struct, rename="camel", kw_only=True):
    """One piece of a streamed command's output (core NATS: not stored; the final result
    still carries the whole capped output)."""

    seq: int
    stream: OutputStream
    data: str


class ExecKillParams(Params, kw_only=True):
    stream_id: StreamId


class ExecKillResult(Result, kw_only=True):
    #: False: no command of that stream is running (it had ended, or never started).
    killed: bool


class ExecPipeParams(Params, kw_only=True):
    """A command whose stdin and stdout are a byte stream (contracts.daemon.streams)."""

    #: argv: the first element is the program; never run through a shell.
    command: Annotated[list[str], msgspec.Meta(min_length=1)]
    cwd: str | None = None
    env: dict[str, str] | None = None
    #: The daemon's chunk size and receive window for this stream.
    chunk_size: Annotated[int, msgspec.Meta(ge=1024, le=MAX_CHUNK)] = DEFAULT_CHUNK
    window: Annotated[int, msgspec.Meta(ge=1024, le=64 * MAX_CHUNK)] = DEFAULT_WINDOW

    def __post_init__(self) -> None:
        if not self.command[0]:
            raise ValueError("field `command` must start with a program name")
        if self.window < self.chunk_size:
            raise ValueError("field `window` must be at least `chunkSize`")
        for name in self.env or {}:
            check_env_name(name, "env")


class DaemonLogParams(Params, kw_only=True):
    lines: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 200


class DaemonLogResult(Result, kw_only=True):
    lines: list[str]


EXEC_STREAM = MethodSpec(
    "tool.execStream",
    ExecStreamParams,
    ExecCommandResult,
    "tool.execCommand, with its output also published in chunks as it is read.",
    _UNREACHABLE,
)
EXEC_KILL = MethodSpec(
    "tool.execKill",
    ExecKillParams,
    ExecKillResult,
    "SIGKILL the process group of a running tool.execStream.",
    _UNREACHABLE,
    at_once=True,
)
DAEMON_LOG = MethodSpec(
    "daemon.log",
    DaemonLogParams,
    DaemonLogResult,
    "The last lines of the daemon's own log (where its stdout goes).",
    (*_UNREACHABLE, NotSupported),
)

EXEC_PIPE = MethodSpec(
    "tool.execPipe",
    ExecPipeParams,
    StreamOpened,
    "Run a command whose stdin and merged stdout/stderr are a byte stream; its exit code "
    "is the stream's end code.",
    (*_UNREACHABLE, TooManyStreams),
)

# --- interactive sessions (contracts.daemon.sessions) ---------------------------------------------
SESSION_OPEN = MethodSpec(
    "session.open",
    ss.SessionOpenParams,
    ss.SessionInfo,
    "Start a command (default: the login shell) on a pseudo-terminal, kept with no client.",
    (*_UNREACHABLE, TooManyStreams),
    wakes="terminal",
)
SESSION_LIST = MethodSpec(
    "session.list", NoParams, ss.SessionList, "The machine's sessions.", _UNREACHABLE
)
SESSION_RESIZE = MethodSpec(
    "session.resize",
    ss.SessionResizeParams,
    ss.SessionInfo,
    "Set a session's terminal size (its foreground process gets SIGWINCH).",
    (*_UNREACHABLE, NotFound),
    wakes="terminal",
)
SESSION_CLOSE = MethodSpec(
    "session.close",
    ss.SessionRef,
    ss.SessionClosed,
    "Hang up a session (SIGHUP, then SIGKILL) and forget it.",
    _UNREACHABLE,
    wakes="terminal",
)
SESSION_SIGNAL = MethodSpec(
    "session.signal",
    ss.SessionSignalParams,
    ss.SessionSignaled,
    "Send a signal to a session's process group.",
    (*_UNREACHABLE, NotFound),
    wakes="terminal",
)
SESSION_WRITE = MethodSpec(
    "session.write",
    ss.SessionWriteParams,
    ss.SessionWritten,
    "Write bytes to a session's input (a pipe session: then perhaps close its stdin).",
    (*_UNREACHABLE, NotFound),
    wakes="terminal",
)
SESSION_ATTACH = MethodSpec(
    "session.attach",
    ss.SessionAttachParams,
    StreamOpened,
    "A byte stream to a session: its scrollback, then live output (as records); input back.",
    (*_UNREACHABLE, NotFound, TooManyStreams),
    wakes="terminal",
)

DAEMON_METHODS: tuple[AnySpec, ...] = (
    WRITE_FILE,
    EXEC_COMMAND,
    GIT_CLONE,
    GET_VERSION,
    HEALTH,
    PROCESS_START,
    PROCESS_LIST,
    PROCESS_KILL,
    PROCESS_LOGS,
    SELF_UPDATE,
    STOP,
    EXEC_STREAM,
    EXEC_KILL,
    DAEMON_LOG,
    LIST_PORTS,
    EXEC_PIPE,
    SESSION_OPEN,
    SESSION_LIST,
    SESSION_RESIZE,
    SESSION_CLOSE,
    SESSION_SIGNAL,
    SESSION_WRITE,
    SESSION_ATTACH,
    TUNNEL_CONNECT,
    *FILE_METHODS,
    *CODE_METHODS,
    *DESKTOP_METHODS,
    *WATCH_METHODS,
)
