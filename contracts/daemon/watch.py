"""``tool.watch``: changes under a path of the machine's home as the kernel reports them
(inotify), sent on a byte stream (contracts.daemon.streams) as they happen.

The path is confined to the home as the file methods' are (contracts/daemon/files.py). The
daemon answers ``WatchOpened``; its side of the stream then carries one JSON ``FileEvent`` a
line (UTF-8, ``\\n`` after each). It ends the stream with an end frame whose code says why
(``WatchEnd``), and the platform ends it by aborting it (its client left).

What a burst leaves out is bounded, never buffered without end: the daemon holds at most
``MAX_PENDING`` events its stream has no credit for yet, merging one that repeats the last
held event of its path (a file written in many pieces is one ``write``); past the bound it
counts what it leaves out and says so with one ``overflow`` event before the next it sends.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated, Literal

import msgspec

from contracts.daemon.files import HomePath
from contracts.daemon.streams import StreamOpened
from contracts.errors import (
    BadPath,
    DaemonTimeout,
    DaemonUnavailable,
    FileNotFound,
    InvalidParams,
    ToolError,
    TooManyStreams,
    WrongFileKind,
)
from contracts.rpc.jsonrpc import AnySpec, MethodSpec, Params

#: What a watch reports, as fsnotify (and so E2B's ``files.watchDir``) names the kernel's
#: events: a rename is ``rename`` at the old name and ``create`` at the new one.
FileEventType = Literal["create", "write", "remove", "rename", "chmod"]
FILE_EVENT_TYPES: tuple[FileEventType, ...] = ("create", "write", "remove", "rename", "chmod")
#: Events a watch's daemon holds for a stream that has no credit, before it leaves some out.
MAX_PENDING = 4096
#: Directories one recursive watch may take (each is one inotify watch of the machine's
#: user, whose kernel allows ``fs.inotify.max_user_watches`` in all).
MAX_WATCHED_DIRS = 8192
#: The watch's stream: small chunks (an event is a line), a window of a few hundred events.
WATCH_CHUNK = 16 * 1024
WATCH_WINDOW = 16 * WATCH_CHUNK


class WatchEnd(IntEnum):
    """The code of the end frame a daemon ends a watch's stream with."""

    #: The watched path itself was removed or moved away.
    REMOVED = 1
    #: The machine is being paused (its daemon lets its connection go).
    PAUSED = 2
    #: The daemon is stopping (its machine stops, or the daemon restarts).
    STOPPING = 3


class WatchParams(Params, kw_only=True):
    path: HomePath
    #: Also what happens in every directory below it (each watched as it appears).
    recursive: bool = False
    #: Only these kinds (none: all of them); ``overflow`` is always said.
    events: Annotated[list[FileEventType], msgspec.Meta(min_length=1, max_length=5)] | None = None


class WatchOpened(StreamOpened, kw_only=True):
    #: The watched path, absolute on the machine.
    path: str
    #: Directories under watch when it began (1 unless recursive).
    watched_dirs: int


class FileEvent(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    """One change, as its machine's kernel reported it (one line of a watch's stream)."""

    #: ``overflow``: events were left out (a burst past the bound, or the kernel's own queue):
    #: what is under the path may have changed in ways not reported; look again.
    type: Literal["create", "write", "remove", "rename", "chmod", "overflow"]
    #: Absolute on the machine (``overflow``: the watched path).
    path: Annotated[str, msgspec.Meta(max_length=8192)]
    is_dir: bool = False
    #: ``overflow`` only: how many events were left out (0: the kernel's queue overflowed,
    #: and it does not say how many).
    dropped: Annotated[int, msgspec.Meta(ge=0)] = 0


WATCH: MethodSpec[WatchParams, WatchOpened] = MethodSpec(
    "tool.watch", WatchParams, WatchOpened,
    "Report changes under a path of the home (inotify) on a byte stream, one JSON line each.",
    (DaemonUnavailable, DaemonTimeout, InvalidParams, ToolError, FileNotFound, WrongFileKind,
     BadPath, TooManyStreams),
)  # fmt: skip

WATCH_METHODS: tuple[AnySpec, ...] = (WATCH,)
