"""The daemon's file tools: read, list, stat and remove, in the home only (see homefs); making
a directory and moving: daemon.files.dirs."""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import msgspec

from contracts.daemon.files import (
    LIST_DIR,
    MAKE_DIR,
    MOVE,
    READ_FILE,
    REMOVE_FILE,
    STAT,
    DirEntry,
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
from contracts.errors import FileNotFound, FileTooLarge, FleetError, NotText, WrongFileKind
from contracts.rpc.jsonrpc import handles
from daemon.files import dirs as dir_tools, homefs
from daemon.files.entries import Owners, entry_at, kind_of
from daemon.files.homefs import Found, Swapped, fs_error, retrying

_ENCODER = msgspec.json.Encoder()
#: Read a file: never follow a link at the end (the walk did), never block on a FIFO.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
#: A directory, opened to be listed: never through a link (the walk followed those it may).
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: Where the streamed download lives, for the FileTooLarge message.
_DOWNLOAD_HINT = (
    "download it as a stream: `fleet machines cp MACHINE:PATH LOCAL`, "
    "or GET /machines/{machineId}/files/{path}"
)


def open_file(found: Found) -> int:
    """The regular file ``found`` names, opened for reading (the walk followed links)."""
    dir_fd, name = found.entry()
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        raise FileNotFound(f"{found.shown}: no such file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link swapped in after the walk: walk again
            raise Swapped from None
        raise fs_error(found.shown, exc) from None
    kind = kind_of(os.fstat(fd).st_mode)
    if kind != "file":
        os.close(fd)
        raise WrongFileKind(f"{found.shown} is not a regular file ({kind})", data={"kind": kind})
    return fd


def read_file(home: str, params: ReadFileParams, limit: int) -> ReadFileResult:
    """The whole file, if its encoded content fits in ``limit`` bytes."""

    def attempt() -> ReadFileResult:
        with homefs.walk(home, params.path, follow_last=True) as found:
            fd = open_file(found)
            try:
                return _read_fd(fd, found.shown, params, limit)
            finally:
                os.close(fd)

    return retrying(attempt)


def _read_fd(fd: int, shown: str, params: ReadFileParams, limit: int) -> ReadFileResult:
    st = os.fstat(fd)
    # Base64 makes 4 bytes of 3; text may grow too (JSON escapes), checked once encoded.
    room = limit * 3 // 4 if params.encoding == "base64" else limit
    if st.st_size > room:
        raise _too_large(shown, st.st_size, room)
    data = _read_at_most(fd, room + 1)  # it may have grown since fstat
    if len(data) > room:
        raise _too_large(shown, len(data), room)
    if params.encoding == "base64":
        content = base64.b64encode(data).decode()
    else:
        try:
            content = data.decode()
        except UnicodeDecodeError as exc:
            raise NotText(f"{shown} is not UTF-8 text (byte {exc.start}): read it with "
                          'encoding "base64"') from None  # fmt: skip
        if _json_size(content) > limit:
            raise _too_large(shown, len(data), room)
    return ReadFileResult(path=shown, content=content, encoding=params.encoding, size=len(data),
                          mode=stat.S_IMODE(st.st_mode))  # fmt: skip


def _json_size(text: str) -> int:
    return len(_ENCODER.encode(text))


def _read_at_most(fd: int, n: int) -> bytes:
    parts, left = [], n
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _too_large(shown: str, size: int, limit: int) -> FileTooLarge:
    return FileTooLarge(
        f"{shown} is {size} bytes, more than one message holds ({limit}): {_DOWNLOAD_HINT}",
        data={"size": size, "limit": limit},
    )


def stat_path(home: str, params: StatParams) -> StatResult:
    with homefs.walk(home, params.path) as found:
        dir_fd, name = found.entry()
        entry = entry_at(dir_fd, name, found.shown)
    return StatResult(path=found.shown, **{f: getattr(entry, f) for f in entry.__struct_fields__})


def list_dir(home: str, params: ListDirParams, room: int | None = None) -> ListDirResult:
    """The entries in the order of their paths (``depth`` levels down), from after
    ``params.after``: at most ``limit``, and no more than ``room`` bytes of them (what one
    answer can carry); ``truncated`` and ``next_after`` say where the next page starts."""
    after = tuple(params.after.split("/")) if params.after else ()

    def attempt() -> ListDirResult:
        with homefs.walk(home, params.path, follow_last=True) as found:
            fd = _open_listed(found)
            try:
                tree = _tree(fd, "", found.shown, params.depth, after, Owners())
                with contextlib.closing(tree):
                    entries, more = _page(tree, params.limit, room)
            finally:
                os.close(fd)
        last = entries[-1].name if more and entries else None
        return ListDirResult(path=found.shown, entries=entries, truncated=more,
                             next_after=last)  # fmt: skip

    return retrying(attempt)


def _page(entries: Iterator[DirEntry], limit: int, room: int | None) -> tuple[list[DirEntry], bool]:
    """The first ``limit`` entries that fit in ``room`` bytes, and whether more follow."""
    page: list[DirEntry] = []
    used = 0
    for entry in entries:
        used += len(_ENCODER.encode(entry)) + 1
        if len(page) == limit or (room is not None and used > room):
            return page, True
        page.append(entry)
    return page, False


def _tree(fd: int, prefix: str, shown: str, levels: int, after: tuple[str, ...],
          owners: Owners) -> Generator[DirEntry]:  # fmt: skip
    """The entries of the directory ``fd`` and, ``levels`` > 1, of its subdirectories after
    each (in the order of their paths' components, so that a page's end is a path to go on
    after), each named by its path from the listed directory (``prefix``). ``after``: the
    components of the cursor's path left at this level; what sorts before it is skipped
    without a look. An entry gone since its directory was read is left out."""
    try:
        names = sorted(os.listdir(fd))
    except OSError as exc:
        raise fs_error(shown, exc) from None
    start = bisect.bisect_left(names, after[0]) if after else 0
    for i, name in enumerate(names[start:]):
        on_cursor = i == 0 and bool(after) and name == after[0]
        kind = None
        if not on_cursor:  # the cursor's own entry was on the page before
            try:
                entry = entry_at(fd, name, shown, owners, prefix + name)
            except FileNotFound:
                continue
            kind = entry.kind
            yield entry
        if levels > 1 and kind in (None, "dir"):
            yield from _entered(fd, name, prefix + name + "/", shown, levels - 1,
                                after[1:] if on_cursor else (), owners)  # fmt: skip


def _entered(fd: int, name: str, prefix: str, shown: str, levels: int,
             after: tuple[str, ...], owners: Owners) -> Generator[DirEntry]:  # fmt: skip
    """A subdirectory's part of ``_tree``, entered by descriptor with O_NOFOLLOW: a link there
    (even one swapped in since it was described) is never entered, nor what cannot be read."""
    try:
        sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
    except OSError:
        return
    try:
        yield from _tree(sub, prefix, shown, levels, after, owners)
    except FleetError:  # it could not be read (its permissions): its entries are left out
        return
    finally:
        os.close(sub)


def _open_listed(found: Found) -> int:
    if found.name is None:
        return os.dup(found.dir_fd)
    try:
        return os.open(found.name, _DIR_FLAGS, dir_fd=found.dir_fd)
    except FileNotFoundError:
        raise FileNotFound(f"{found.shown}: no such directory") from None
    except NotADirectoryError:
        if homefs.link_target(found.dir_fd, found.name) is not None:
            raise Swapped from None
        raise WrongFileKind(f"{found.shown} is not a directory", data={"kind": "file"}) from None
    except OSError as exc:
        raise fs_error(found.shown, exc) from None


def remove_file(home: str, params: RemoveFileParams) -> RemoveFileResult:
    """Unlink the entry itself (a link, not what it points to); a directory only when empty,
    or with ``recursive`` (shutil.rmtree by descriptors: it never follows a link out)."""
    with homefs.walk(home, params.path) as found:
        homefs.refuse_protected(home, found.shown, "$.path", "removed")
        dir_fd, name = found.entry()
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return RemoveFileResult(path=found.shown, removed=False)
        try:
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=dir_fd)
            elif params.recursive:
                shutil.rmtree(name, dir_fd=dir_fd)
            else:
                os.rmdir(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return RemoveFileResult(path=found.shown, removed=False)
        except OSError as exc:
            if exc.errno == errno.ENOTEMPTY:
                raise WrongFileKind(f"{found.shown} is a directory that is not empty: remove it "
                                    "with recursive", data={"kind": "dir"}) from None  # fmt: skip
            raise fs_error(found.shown, exc) from None
    return RemoveFileResult(path=found.shown, removed=True)


class FileTools:
    """The file methods as the daemon serves them: each in a thread (a read of a megabyte, a
    recursive remove must not hold up the daemon's other calls)."""

    def __init__(self, home: Path, room: Callable[[], int]) -> None:
        """``room``: how many bytes an answer may take (the connection's payload limit less
        the reply's headers); its envelope (a 4 KiB path among it) takes 8 KiB of that."""
        self._home = str(home)
        self._room = room

    @handles(READ_FILE)
    async def read_file(self, params: ReadFileParams, _: None) -> ReadFileResult:
        return await asyncio.to_thread(read_file, self._home, params, self._room() - 8 * 1024)

    @handles(LIST_DIR)
    async def list_dir(self, params: ListDirParams, _: None) -> ListDirResult:
        return await asyncio.to_thread(list_dir, self._home, params, self._room() - 8 * 1024)

    @handles(STAT)
    async def stat(self, params: StatParams, _: None) -> StatResult:
        return await asyncio.to_thread(stat_path, self._home, params)

    @handles(REMOVE_FILE)
    async def remove_file(self, params: RemoveFileParams, _: None) -> RemoveFileResult:
        return await asyncio.to_thread(remove_file, self._home, params)

    @handles(MAKE_DIR)
    async def make_dir(self, params: MakeDirParams, _: None) -> MakeDirResult:
        return await asyncio.to_thread(dir_tools.make_dir, self._home, params)

    @handles(MOVE)
    async def move(self, params: MoveParams, _: None) -> MoveResult:
        return await asyncio.to_thread(dir_tools.move, self._home, params)
