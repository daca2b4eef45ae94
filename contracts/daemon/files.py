"""The daemon's file methods: read, list, stat, remove, make a directory and move, within the
machine's home.

Every path is confined to the home as ``tool.writeFile``'s is (``~`` and relative paths resolve
against it; an absolute path must lie in it; ``..`` and symbolic links may not lead out of it),
and it is resolved one directory at a time from the home, never following a link without
checking where it goes, so a link swapped in while a call runs cannot lead it out either.

A file bigger than one NATS message is not read here (``FileTooLarge``): it is downloaded as a
stream.
"""

from __future__ import annotations

import re
import secrets
from typing import Annotated, Literal

import msgspec

from contracts.daemon.streams import MAX_CHUNK, StreamOpened
from contracts.errors import (
    BadPath,
    DaemonTimeout,
    DaemonUnavailable,
    FileNotFound,
    FileTooLarge,
    InvalidParams,
    NotText,
    ToolError,
    TooManyStreams,
    WrongFileKind,
)
from contracts.rpc.jsonrpc import AnySpec, MethodSpec, Params, Result

#: The mode of a new file when none is given (as tool.writeFile's).
DEFAULT_MODE = 0o644
#: A path in the machine's home, as the file methods take it.
HomePath = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
Encoding = Literal["utf-8", "base64"]
#: ``other``: a FIFO, a socket or a device.
FileKind = Literal["file", "dir", "symlink", "other"]
#: ``tool.listDir`` answers at most this many entries (``truncated`` says there were more).
MAX_DIR_ENTRIES = 10_000
#: How many levels below its directory ``tool.listDir`` goes at most (``depth``): deep enough
#: for a project's tree, shallow enough that one call's walk stays a listing, not a crawl.
MAX_LIST_DEPTH = 16


class ReadFileParams(Params, kw_only=True):
    path: HomePath
    #: ``utf-8``: the content as text (NotText when it is not UTF-8); ``base64``: any bytes.
    encoding: Encoding = "utf-8"


class ReadFileResult(Result, kw_only=True):
    #: Where it was read, as an absolute path on the machine.
    path: str
    content: str
    encoding: Encoding
    #: Its size in bytes.
    size: int
    #: Its permission bits.
    mode: int


class ListDirParams(Params, kw_only=True):
    path: HomePath = "~"
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_DIR_ENTRIES)] = 1000
    #: Start after this name (a previous answer's ``nextAfter``): the next page.
    after: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)] | None = None
    #: 1: the directory's own entries; more: those of its subdirectories too, that many levels
    #: down (links to directories are listed, not entered).
    depth: Annotated[int, msgspec.Meta(ge=1, le=MAX_LIST_DEPTH)] = 1


class DirEntry(Result, kw_only=True):
    #: Its name; bytes that are not UTF-8 show as U+FFFD. In a listing deeper than one level,
    #: its path from the listed directory (``src/lib/x.py``).
    name: str
    #: What the entry itself is: a link is ``symlink``, not what it points to.
    kind: FileKind
    size: int
    mode: int
    #: Last modification, in seconds since the epoch.
    mtime: float
    #: A link's target, as written in the link.
    target: str | None = None
    #: Its owner's and group's names on the machine (the number, as text, where the machine
    #: names none). None: a daemon older than these fields.
    owner: str | None = None
    group: str | None = None
    #: Its type and mode as ``ls -l`` shows them (``-rw-r--r--``, ``drwxr-xr-x``).
    permissions: str | None = None


class ListDirResult(Result, kw_only=True):
    path: str
    #: Sorted by name; deeper than one level, each directory's entries follow it (``a``,
    #: ``a/x``, ``b``: the order of their paths' components).
    entries: list[DirEntry]
    #: True when more entries follow than were answered: past ``limit``, or past what one
    #: answer holds (a page of long names is cut to fit the machine's message size).
    truncated: bool = False
    #: When truncated: the last name answered (a path, deeper than one level); pass it as
    #: ``after`` for the next page.
    next_after: str | None = None


class StatParams(Params, kw_only=True):
    path: HomePath


class StatResult(DirEntry, kw_only=True):
    """The entry at ``path`` itself (a link is described, not followed)."""

    path: str


class RemoveFileParams(Params, kw_only=True):
    path: HomePath
    #: Remove a directory and everything in it (without it, only an empty directory goes).
    recursive: bool = False


class RemoveFileResult(Result, kw_only=True):
    path: str
    #: False: nothing was at the path (removing is idempotent).
    removed: bool


class MakeDirParams(Params, kw_only=True):
    path: HomePath
    #: Make the missing directories on the way too (``mkdir -p``); without it, a missing one
    #: answers FileNotFound.
    parents: bool = True


class MakeDirResult(Result, kw_only=True):
    #: The directory, as an absolute path on the machine.
    path: str
    entry: DirEntry
    #: False: a directory was there already (making one is idempotent).
    created: bool


class MoveParams(Params, kw_only=True):
    source: HomePath
    destination: HomePath


class MoveResult(Result, kw_only=True):
    #: Where it is now, as an absolute path on the machine.
    path: str
    entry: DirEntry


_FILES = (DaemonUnavailable, DaemonTimeout, InvalidParams, ToolError, FileNotFound, WrongFileKind,
          BadPath)  # fmt: skip

READ_FILE: MethodSpec[ReadFileParams, ReadFileResult] = MethodSpec(
    "tool.readFile", ReadFileParams, ReadFileResult,
    "Read a file of the home that fits in one message (FileTooLarge: download it as a stream).",
    (*_FILES, FileTooLarge, NotText),
    wakes="files",
)  # fmt: skip
LIST_DIR: MethodSpec[ListDirParams, ListDirResult] = MethodSpec(
    "tool.listDir",
    ListDirParams,
    ListDirResult,
    "The entries of a directory of the home.",
    _FILES,
    wakes="files",
)
STAT: MethodSpec[StatParams, StatResult] = MethodSpec(
    "tool.stat", StatParams, StatResult, "What is at a path of the home (links not followed).",
    _FILES,
    wakes="files",
)  # fmt: skip
REMOVE_FILE: MethodSpec[RemoveFileParams, RemoveFileResult] = MethodSpec(
    "tool.removeFile", RemoveFileParams, RemoveFileResult,
    "Remove a file, a link or an empty directory of the home (recursive: a whole tree).", _FILES,
    wakes="files",
)  # fmt: skip

MAKE_DIR: MethodSpec[MakeDirParams, MakeDirResult] = MethodSpec(
    "tool.makeDir", MakeDirParams, MakeDirResult,
    "Make a directory of the home (and those on the way, unless parents is false); one there "
    "already answers created: false, anything else there WrongFileKind.", _FILES,
    wakes="files",
)  # fmt: skip
MOVE: MethodSpec[MoveParams, MoveResult] = MethodSpec(
    "tool.move", MoveParams, MoveResult,
    "Move (rename) a file, link or directory of the home, as rename(2): a file at the "
    "destination is replaced, and so is an empty directory by a directory.", _FILES,
    wakes="files",
)  # fmt: skip

_ONE_MESSAGE: tuple[AnySpec, ...] = (READ_FILE, LIST_DIR, STAT, REMOVE_FILE, MAKE_DIR, MOVE)


# --- streamed transfers (contracts.daemon.streams) ------------------------------------------------
#: A transfer's chunk size and receive window unless told otherwise: the largest chunk a
#: receiver takes (half the frames of 256 KiB ones, for each process on the way and the NATS
#: server; the raw hop moves more per chunk the bigger it is, DESIGN.md), and 8 of them (4 MiB)
#: in flight, so that the pipe stays full on a busy host, where each credit frame's round trip
#: waits for a CPU (the 1 GiB round trip: 2 MiB windows of 256 KiB chunks stalled on them).
FILE_CHUNK = MAX_CHUNK
FILE_WINDOW = 8 * FILE_CHUNK
ChunkSize = Annotated[int, msgspec.Meta(ge=1024, le=MAX_CHUNK)]
Window = Annotated[int, msgspec.Meta(ge=1024, le=64 * MAX_CHUNK)]
Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]


class DownloadFileParams(Params, kw_only=True):
    path: HomePath
    chunk_size: ChunkSize = FILE_CHUNK


class DownloadOpened(StreamOpened, kw_only=True):
    """The file's bytes follow on the stream (the daemon's side), then its end frame; a file
    that changed size meanwhile sends what it holds then, and the receiver sees another count."""

    path: str
    #: Checked on the platform's side too: a machine that lies about it cannot make the gateway
    #: send a negative Content-Length.
    size: Annotated[int, msgspec.Meta(ge=0)]
    mode: int


class UploadFileParams(Params, kw_only=True):
    path: HomePath
    #: Omitted: the mode of the file it replaces, else 0644.
    mode: Annotated[int, msgspec.Meta(ge=0, le=0o777)] | None = None
    #: The number of bytes that will come: an end after any other count aborts the upload.
    size: Annotated[int, msgspec.Meta(ge=0)] | None = None
    #: The bytes' SHA-256 (hex), when the sender knows it first: another one aborts the upload.
    sha256: Sha256 | None = None
    window: Window = FILE_WINDOW


class UploadOpened(StreamOpened, kw_only=True):
    """Send the bytes on the stream (the platform's side), then an end frame. The daemon then
    answers on its side with one ``Uploaded`` (JSON) and its own end; or aborts, and then
    nothing is at the path (the bytes went to a temporary file next to it, renamed into place
    only once complete and on disk)."""

    path: str


class Uploaded(Result, kw_only=True):
    path: str
    size: int
    sha256: str
    mode: int


_STREAMED = (*_FILES, TooManyStreams)
DOWNLOAD_FILE: MethodSpec[DownloadFileParams, DownloadOpened] = MethodSpec(
    "tool.downloadFile", DownloadFileParams, DownloadOpened,
    "Send a regular file of the home, any size, on a byte stream.", _STREAMED,
    wakes="files",
)  # fmt: skip
UPLOAD_FILE: MethodSpec[UploadFileParams, UploadOpened] = MethodSpec(
    "tool.uploadFile", UploadFileParams, UploadOpened,
    "Receive a file of the home, any size, on a byte stream: in place only once complete.",
    _STREAMED,
    wakes="files",
)  # fmt: skip

FILE_METHODS: tuple[AnySpec, ...] = (*_ONE_MESSAGE, DOWNLOAD_FILE, UPLOAD_FILE)


#: An upload is written beside its file under a name of this form (``.NAME.HEX`` and the
#: suffix), then renamed over it: a reader never sees half a file, and a watch sees the name.
UPLOAD_SUFFIX = ".fleet-upload"
_UPLOADING = re.compile(r"\.(.+)\.[0-9a-f]{12}" + re.escape(UPLOAD_SUFFIX))


def upload_name(name: str) -> str:
    """The name an upload of ``name`` is written under until it is whole."""
    return f".{name}.{secrets.token_hex(6)}{UPLOAD_SUFFIX}"


def uploaded_name(name: str) -> str | None:
    """The file an upload's temporary ``name`` becomes (None: it is none)."""
    m = _UPLOADING.fullmatch(name)
    return m[1] if m else None
