"""The daemon's file tools: read, list, stat and remove, in the home only (see homefs)."""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import msgspec

from contracts.daemon_files import (
    LIST_DIR,
    READ_FILE,
    REMOVE_FILE,
    STAT,
    DirEntry,
    FileKind,
    ListDirParams,
    ListDirResult,
    ReadFileParams,
    ReadFileResult,
    RemoveFileParams,
    RemoveFileResult,
    StatParams,
    StatResult,
)
from contracts.errors import FileNotFound, FileTooLarge, InvalidParams, NotText, WrongFileKind
from contracts.jsonrpc import handles
from contracts.machine_files import FLEET_DIR, LOCK_FILE, STATE_FILE
from daemon import homefs
from daemon.homefs import Found, Swapped, fs_error, retrying

_ENCODER = msgspec.json.Encoder()
#: Read a file: never follow a link at the end (the walk did), never block on a FIFO.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
#: What a remove may not take from under the daemon: its own configuration and state.
_PROTECTED = (FLEET_DIR, LOCK_FILE, STATE_FILE)
#: Where the streamed download lives, for the FileTooLarge message.
_DOWNLOAD_HINT = (
    "download it as a stream: `fleet machines cp MACHINE:PATH LOCAL`, "
    "or GET /machines/{machineId}/files/{path}"
)


def kind_of(mode: int) -> FileKind:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


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
        entry = _entry(dir_fd, name, found.shown)
    return StatResult(path=found.shown, **{f: getattr(entry, f) for f in entry.__struct_fields__})


def _entry(dir_fd: int, name: str, shown: str) -> DirEntry:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise FileNotFound(f"{shown}: no such file or directory") from None
    except OSError as exc:
        raise fs_error(shown, exc) from None
    kind = kind_of(st.st_mode)
    target = None
    if kind == "symlink":
        with contextlib.suppress(OSError):
            target = _text(os.readlink(name, dir_fd=dir_fd))
    return DirEntry(name=_text(name), kind=kind, size=st.st_size, mode=stat.S_IMODE(st.st_mode),
                    mtime=st.st_mtime, target=target)  # fmt: skip


def _text(name: str) -> str:
    """A file name as JSON can carry it: bytes that are not UTF-8 become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def list_dir(home: str, params: ListDirParams, room: int | None = None) -> ListDirResult:
    """The entries in name order, from after ``params.after``: at most ``limit``, and no
    more than ``room`` bytes of them (what one answer can carry); ``truncated`` and
    ``next_after`` say where the next page starts."""

    def attempt() -> ListDirResult:
        with homefs.walk(home, params.path, follow_last=True) as found:
            fd = _open_listed(found)
            try:
                names = sorted(os.listdir(fd))
                start = bisect.bisect_right(names, params.after) if params.after else 0
                entries = _page(fd, names[start : start + params.limit], found.shown, room)
            finally:
                os.close(fd)
        more = len(names) - start > len(entries)
        last = entries[-1].name if more and entries else None
        return ListDirResult(path=found.shown, entries=entries, truncated=more,
                             next_after=last)  # fmt: skip

    return retrying(attempt)


def _page(dir_fd: int, names: list[str], shown: str, room: int | None) -> list[DirEntry]:
    entries: list[DirEntry] = []
    used = 0
    for name in names:
        entry = _entry(dir_fd, name, shown)
        used += len(_ENCODER.encode(entry)) + 1
        if room is not None and used > room:
            break
        entries.append(entry)
    return entries


def _open_listed(found: Found) -> int:
    if found.name is None:
        return os.dup(found.dir_fd)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(found.name, flags, dir_fd=found.dir_fd)
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
        _refuse_protected(home, found.shown)
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


def _refuse_protected(home: str, shown: str) -> None:
    """A guard against mistakes (``removeFile ~/.fleet recursive``), not a boundary: commands
    on the machine can remove anything of the home anyway."""
    root = os.path.normpath(home)
    for rel in _PROTECTED:
        guarded = f"{root}/{rel}"
        if shown == guarded or (rel != FLEET_DIR and shown.startswith(guarded + "/")):
            raise InvalidParams(f"{shown!r} is the daemon's own ({rel}): not removed",
                                field="$.path")  # fmt: skip


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
