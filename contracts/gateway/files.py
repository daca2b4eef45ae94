"""Gateway methods on the files of a machine's home: read, list, stat, remove, make a directory,
move, watch.

Each is its daemon method with ``machineId`` added, checked as every machine method is (the
caller's token must reach the machine's instance; an archived machine answers Conflict). A file
bigger than one message is not read here but streamed: ``GET``/``PUT`` on ``FILES_PATH``, or
``fleet machines cp``.

``machines.watch`` streams (``POST /rpc/stream``, contracts.gateway.live): one ``output`` event
per change (a ``FileEvent``, contracts.daemon.watch) as the machine's kernel reports it, then
its ``result``: a ``WatchEnded`` that says why it ended. It runs nothing, and holds one of its
token's stream slots while it is open.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import quote

import msgspec

from contracts.daemon import files as df
from contracts.daemon.files import (
    ListDirParams,
    ListDirResult,
    MakeDirParams,
    MakeDirResult,
    MoveParams,
    MoveResult,
    ReadFileParams,
    ReadFileResult,
    RemoveFileParams,
    RemoveFileResult,
    StatParams,
    StatResult,
)
from contracts.daemon.watch import WatchParams
from contracts.errors import (
    BadPath,
    Conflict,
    DaemonTimeout,
    DaemonUnavailable,
    FileNotFound,
    FileTooLarge,
    Forbidden,
    InvalidParams,
    NotFound,
    NotText,
    ToolError,
    TooManyStreams,
    WrongFileKind,
)
from contracts.ids import ID_LENGTH, MACHINE_ID_RE
from contracts.rpc.jsonrpc import AnySpec, ClientMethod, MethodSpec, Result
from contracts.rpc.pass_through import PassThrough

_MachineId = Annotated[
    str, msgspec.Meta(pattern=MACHINE_ID_RE.pattern, min_length=ID_LENGTH, max_length=ID_LENGTH)
]
#: The HTTP route of a machine's files: GET downloads, PUT uploads, streamed either way. The
#: path after ``files/`` is relative to the home (percent-encoded; ``~`` is not needed).
FILES_ROUTE = "/machines/{machineId}/files/{path:.+}"
FILES_PREFIX = "/machines/"


def files_url(machine_id: str, path: str) -> str:
    """The route for one file, its path percent-encoded (``~/`` and a leading ``/`` of a path
    in the home are taken off: the route's paths are relative to the home)."""
    rel = path[2:] if path.startswith("~/") else path
    return f"{FILES_PREFIX}{machine_id}/files/{quote(rel, safe='/')}"


class MachineReadFileParams(ReadFileParams, kw_only=True):
    machine_id: _MachineId


class MachineListDirParams(ListDirParams, kw_only=True):
    machine_id: _MachineId


class MachineStatParams(StatParams, kw_only=True):
    machine_id: _MachineId


class MachineRemoveFileParams(RemoveFileParams, kw_only=True):
    machine_id: _MachineId


class MachineMakeDirParams(MakeDirParams, kw_only=True):
    machine_id: _MachineId


class MachineMoveParams(MoveParams, kw_only=True):
    machine_id: _MachineId


class MachineWatchParams(WatchParams, kw_only=True):
    machine_id: _MachineId


#: Why a watch ended: its machine was ``paused``, ``stopped`` (or is stopping) or ``archived``;
#: its daemon ``restarted`` (the machine runs on: watch again); the watched path was
#: ``removed`` (or moved away); or its stream was ``cut`` (the caller's access revoked, the
#: daemon unreachable: ``message`` says).
WatchEndReason = Literal["paused", "stopped", "archived", "restarted", "removed", "cut"]


class WatchEnded(Result, kw_only=True):
    """The last event of a watch: why it ended."""

    reason: WatchEndReason
    message: str
    #: The watched path, absolute on the machine.
    path: str
    #: Events it sent (an ``overflow`` counts as one).
    events: int


_FILES = (NotFound, Forbidden, Conflict, DaemonUnavailable, DaemonTimeout, InvalidParams,
          ToolError, FileNotFound, WrongFileKind, BadPath)  # fmt: skip

MACHINES_READ_FILE: MethodSpec[MachineReadFileParams, ReadFileResult] = MethodSpec(
    "machines.readFile", MachineReadFileParams, ReadFileResult,
    "Read a file of the machine's home that fits in one message (text, or base64); a bigger "
    "one answers FileTooLarge: download it with GET /machines/{machineId}/files/{path}.",
    (*_FILES, FileTooLarge, NotText),
    scope="files:read", client=ClientMethod("read_file", "machine_id path"),
    passes=PassThrough(df.READ_FILE),
)  # fmt: skip
MACHINES_LIST_DIR: MethodSpec[MachineListDirParams, ListDirResult] = MethodSpec(
    "machines.listDir", MachineListDirParams, ListDirResult,
    "The entries of a directory of the machine's home, sorted by name (depth > 1: its "
    "subdirectories' too, each after its directory, named by its path from the directory).",
    _FILES,
    scope="files:read", reads=True, tool="list_dir",
    client=ClientMethod("list_dir", "machine_id path",
                        doc="after: a page's next_after; depth: how many levels down."),
    passes=PassThrough(df.LIST_DIR),
)  # fmt: skip
MACHINES_STAT: MethodSpec[MachineStatParams, StatResult] = MethodSpec(
    "machines.stat", MachineStatParams, StatResult,
    "What is at a path of the machine's home (a link is described, not followed).", _FILES,
    scope="files:read", reads=True, client=ClientMethod("stat", "machine_id path"), tool="stat",
    passes=PassThrough(df.STAT),
)  # fmt: skip
MACHINES_REMOVE_FILE: MethodSpec[MachineRemoveFileParams, RemoveFileResult] = MethodSpec(
    "machines.removeFile", MachineRemoveFileParams, RemoveFileResult,
    "Remove a file, link or empty directory of the machine's home (recursive: a whole tree).",
    _FILES,
    scope="files:write", client=ClientMethod("remove_file", "machine_id path"), tool="remove_file",
    passes=PassThrough(df.REMOVE_FILE),
)  # fmt: skip
MACHINES_MAKE_DIR: MethodSpec[MachineMakeDirParams, MakeDirResult] = MethodSpec(
    "machines.makeDir", MachineMakeDirParams, MakeDirResult,
    "Make a directory of the machine's home, and those on the way unless parents is false; a "
    "directory there already answers created: false, anything else there WrongFileKind.",
    _FILES,
    scope="files:write", client=ClientMethod("make_dir", "machine_id path"), tool="make_dir",
    passes=PassThrough(df.MAKE_DIR),
)  # fmt: skip
MACHINES_MOVE: MethodSpec[MachineMoveParams, MoveResult] = MethodSpec(
    "machines.move", MachineMoveParams, MoveResult,
    "Move (rename) a file, link or directory of the machine's home as rename(2) does: into an "
    "existing directory only, replacing a file there (or an empty directory, by a directory); "
    "never a directory into itself.", _FILES,
    scope="files:write", client=ClientMethod("move", "machine_id source destination"),
    tool="move", passes=PassThrough(df.MOVE),
)  # fmt: skip

MACHINES_WATCH: MethodSpec[MachineWatchParams, WatchEnded] = MethodSpec(
    "machines.watch", MachineWatchParams, WatchEnded,
    "Watch a path of the machine's home: POSTed to /rpc/stream, each change (create, write, "
    "remove, rename, chmod) streams as the machine's kernel reports it, until the watch ends "
    "(its client leaves, its machine pauses or stops); the result says why it ended.",
    (*_FILES, TooManyStreams),
    scope="files:read", reads=True, streams=True, hand_written=True, in_code=False,
)  # fmt: skip

FILE_METHODS: tuple[AnySpec, ...] = (
    MACHINES_READ_FILE,
    MACHINES_LIST_DIR,
    MACHINES_STAT,
    MACHINES_REMOVE_FILE,
    MACHINES_MAKE_DIR,
    MACHINES_MOVE,
    MACHINES_WATCH,
)
