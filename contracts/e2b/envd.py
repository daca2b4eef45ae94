"""E2B's in-sandbox API, "envd" (Connect RPC with JSON: ``process.Process`` and
``filesystem.Filesystem``), as fleetd's E2B front serves it: the messages of E2B's published
``process.proto`` and ``filesystem.proto`` in protobuf's JSON form (lowerCamelCase names, bytes
as base64, enums by name, an unset field left out), written as schemas of our own.

Requests are read as protobuf's JSON reader reads them: an unknown field is ignored, a number
may come as a string (int64 does).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec

from contracts.daemon.files import MAX_LIST_DEPTH

#: E2B's default user and its home: paths under it are the machine's home, both ways.
E2B_HOME: Final = "/home/user"
#: The deepest a ``ListDir`` goes (fleetd's ``machines.listDir``'s ``depth``).
MAX_DEPTH: Final = MAX_LIST_DEPTH

FileType = Literal["FILE_TYPE_UNSPECIFIED", "FILE_TYPE_FILE", "FILE_TYPE_DIRECTORY",
                   "FILE_TYPE_SYMLINK"]  # fmt: skip
EventType = Literal["EVENT_TYPE_UNSPECIFIED", "EVENT_TYPE_CREATE", "EVENT_TYPE_WRITE",
                    "EVENT_TYPE_REMOVE", "EVENT_TYPE_RENAME", "EVENT_TYPE_CHMOD"]  # fmt: skip
Signal = Literal["SIGNAL_UNSPECIFIED", "SIGNAL_SIGTERM", "SIGNAL_SIGKILL"]
_Path = Annotated[str, msgspec.Meta(max_length=4096)]


class Message(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    """A protobuf message in its JSON form."""


# --- filesystem.Filesystem -----------------------------------------------------------------------
class PathRequest(Message, kw_only=True):
    """``Stat``, ``MakeDir``, ``Remove``."""

    path: _Path = ""


class MoveRequest(Message, kw_only=True):
    source: _Path = ""
    destination: _Path = ""


class ListDirRequest(Message, kw_only=True):
    path: _Path = ""
    #: 0 (unset) is 1, as envd takes it; past ``MAX_DEPTH``, fleetd refuses it.
    depth: Annotated[int, msgspec.Meta(ge=0)] = 0


class WatchDirRequest(Message, kw_only=True):
    """``WatchDir`` and ``CreateWatcher``."""

    path: _Path = ""
    recursive: bool = False
    include_entry: bool = False
    allow_network_mounts: bool = False


class WatcherRef(Message, kw_only=True):
    watcher_id: Annotated[str, msgspec.Meta(max_length=64)] = ""


class EntryInfo(Message, kw_only=True):
    name: str
    type: FileType
    path: str
    size: int = 0
    mode: int = 0
    permissions: str = ""
    owner: str = ""
    group: str = ""
    modified_time: datetime | None = None
    symlink_target: str | None = None
    metadata: dict[str, str] | None = None
    is_symlink: bool = False


class EntryAnswer(Message, kw_only=True):
    """``Stat``, ``MakeDir``, ``Move``."""

    entry: EntryInfo


class ListDirAnswer(Message, kw_only=True):
    entries: list[EntryInfo] = []


class FilesystemEvent(Message, kw_only=True):
    name: str
    type: EventType
    entry: EntryInfo | None = None


class Empty(Message, kw_only=True):
    pass


class WatchDirEvent(Message, kw_only=True):
    """One message of a ``WatchDir`` stream: ``start`` first, then events and keepalives."""

    start: Empty | None = None
    filesystem: FilesystemEvent | None = None
    keepalive: Empty | None = None


class WatcherCreated(Message, kw_only=True):
    watcher_id: str


class WatcherEvents(Message, kw_only=True):
    events: list[FilesystemEvent] = []


# --- process.Process ---------------------------------------------------------------------------
class ProcessConfig(Message, kw_only=True):
    cmd: Annotated[str, msgspec.Meta(max_length=4096)] = ""
    args: Annotated[list[Annotated[str, msgspec.Meta(max_length=128 * 1024)]],
                    msgspec.Meta(max_length=256)] = []  # fmt: skip
    envs: dict[str, str] = {}
    cwd: _Path | None = None


class PtySize(Message, kw_only=True):
    cols: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 0
    rows: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 0


class Pty(Message, kw_only=True):
    size: PtySize = msgspec.field(default_factory=PtySize)


class ProcessSelector(Message, kw_only=True):
    """Exactly one of ``pid`` and ``tag``."""

    pid: Annotated[int, msgspec.Meta(ge=0)] | None = None
    tag: str | None = None


class StartRequest(Message, kw_only=True):
    process: ProcessConfig = msgspec.field(default_factory=ProcessConfig)
    pty: Pty | None = None
    tag: str | None = None
    #: Absent: stdin is open (E2B's default for an older SDK).
    stdin: bool | None = None


class SelectRequest(Message, kw_only=True):
    """``Connect``, ``CloseStdin``."""

    process: ProcessSelector = msgspec.field(default_factory=ProcessSelector)


class UpdateRequest(Message, kw_only=True):
    process: ProcessSelector = msgspec.field(default_factory=ProcessSelector)
    pty: Pty | None = None


class ProcessInput(Message, kw_only=True):
    stdin: bytes | None = None
    pty: bytes | None = None


class SendInputRequest(Message, kw_only=True):
    process: ProcessSelector = msgspec.field(default_factory=ProcessSelector)
    input: ProcessInput = msgspec.field(default_factory=ProcessInput)


class SendSignalRequest(Message, kw_only=True):
    process: ProcessSelector = msgspec.field(default_factory=ProcessSelector)
    signal: Signal = "SIGNAL_UNSPECIFIED"


class StreamInputStart(Message, kw_only=True):
    process: ProcessSelector = msgspec.field(default_factory=ProcessSelector)


class StreamInputData(Message, kw_only=True):
    input: ProcessInput = msgspec.field(default_factory=ProcessInput)


class StreamInputRequest(Message, kw_only=True):
    start: StreamInputStart | None = None
    data: StreamInputData | None = None
    keepalive: Empty | None = None


class ProcessInfo(Message, kw_only=True):
    config: ProcessConfig
    pid: int
    tag: str | None = None


class ListAnswer(Message, kw_only=True):
    processes: list[ProcessInfo] = []


class StartEvent(Message, kw_only=True):
    pid: int


class DataEvent(Message, kw_only=True):
    stdout: bytes | None = None
    stderr: bytes | None = None
    pty: bytes | None = None


class EndEvent(Message, kw_only=True):
    exit_code: int = 0
    exited: bool = False
    status: str = ""
    error: str | None = None


class ProcessEvent(Message, kw_only=True):
    start: StartEvent | None = None
    data: DataEvent | None = None
    end: EndEvent | None = None
    keepalive: Empty | None = None


class ProcessEventMessage(Message, kw_only=True):
    """One message of a ``Start`` or ``Connect`` stream."""

    event: ProcessEvent
