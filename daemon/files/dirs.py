"""The daemon's tools that change the home's tree: make a directory, move (rename) an entry.

Both reach their paths as every file tool does (homefs): walked from the home one directory
at a time by descriptor, and then act on one name relative to a directory descriptor reached
that way (``mkdirat``, ``renameat``), which never follow a link at that name: a path the
machine controls never leads them out of the home, not even one changed while they run.
"""

from __future__ import annotations

import contextlib
import errno
import os

from contracts.daemon.files import MakeDirParams, MakeDirResult, MoveParams, MoveResult
from contracts.errors import FileNotFound, FleetError, InvalidParams, WrongFileKind
from daemon.files import homefs
from daemon.files.entries import entry_at
from daemon.files.homefs import Found, fs_error

#: A new directory's mode (as a write's missing directories get; the umask applies).
_DIR_MODE = 0o755


def make_dir(home: str, params: MakeDirParams) -> MakeDirResult:
    """Make the directory (and with ``parents`` the missing ones on the way, as ``mkdir -p``);
    a directory there already is ``created: false``; anything else there (a file, a link, even
    one to a directory) is WrongFileKind, never followed."""

    with contextlib.ExitStack() as stack:
        try:
            found = stack.enter_context(homefs.walk(home, params.path,
                                                    make_dirs=params.parents))  # fmt: skip
        except FileNotFound:
            raise FileNotFound(f"{params.path}: a directory on the way does not exist (make it "
                               "too with parents: true)") from None  # fmt: skip
        made = _make_at(found)
    return made


def _make_at(found: Found) -> MakeDirResult:
    if found.name is None:  # the path is a directory the walk reached (the home itself)
        label = found.shown.rstrip("/").rsplit("/", 1)[-1]
        entry = entry_at(found.dir_fd, ".", found.shown, label=label)
        return MakeDirResult(path=found.shown, entry=entry, created=False)
    dir_fd, name = found.entry()
    created = True
    try:
        os.mkdir(name, _DIR_MODE, dir_fd=dir_fd)
    except FileExistsError:
        created = False
    except OSError as exc:
        raise fs_error(found.shown, exc) from None
    entry = entry_at(dir_fd, name, found.shown)
    if entry.kind != "dir":
        raise WrongFileKind(f"{found.shown} exists and is not a directory ({entry.kind})",
                            data={"kind": entry.kind})  # fmt: skip
    return MakeDirResult(path=found.shown, entry=entry, created=created)


def move(home: str, params: MoveParams) -> MoveResult:
    """``rename(2)`` of the source's own entry (a link moves, not what it points to) to the
    destination, whose directory must exist: a file there is replaced (atomically), and so is
    an empty directory by a directory; a directory is never moved into itself."""
    _check_move(home, params)
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(homefs.walk(home, params.source, field="$.source"))
        try:
            dst = stack.enter_context(homefs.walk(home, params.destination,
                                                  field="$.destination"))  # fmt: skip
        except FileNotFound:
            raise FileNotFound(f"{params.destination}: its directory does not exist (a move "
                               "makes none: makeDir it first)") from None  # fmt: skip
        src_fd, src_name = src.entry()
        dst_fd, dst_name = dst.entry()
        try:
            os.rename(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        except OSError as exc:
            raise _move_error(src.shown, dst.shown, exc) from None
        moved = MoveResult(path=dst.shown, entry=entry_at(dst_fd, dst_name, dst.shown))
    return moved


def _check_move(home: str, params: MoveParams) -> None:
    """The rules a look at the paths alone decides, before either is walked (the kernel
    decides the rest: a destination inside the source through a link is EINVAL)."""
    source = homefs.lexical_target(home, params.source, "$.source")
    destination = homefs.lexical_target(home, params.destination, "$.destination")
    if source == os.path.normpath(home):
        raise InvalidParams(f"{source!r} is the home itself", field="$.source")
    if destination.startswith(source + "/"):
        raise _into_itself(source, destination)
    homefs.refuse_protected(home, source, "$.source", "moved")
    homefs.refuse_protected(home, destination, "$.destination", "replaced")


def _into_itself(source: str, destination: str) -> InvalidParams:
    return InvalidParams(f"{destination!r} is inside {source!r}: a directory cannot be moved "
                         "into itself", field="$.destination")  # fmt: skip


def _move_error(source: str, destination: str, exc: OSError) -> FleetError:
    """What rename(2) refused, in the file tools' errors."""
    if exc.errno == errno.ENOENT:
        return FileNotFound(f"{source}: no such file or directory")
    if exc.errno == errno.EINVAL:
        return _into_itself(source, destination)
    if exc.errno == errno.EISDIR:
        return WrongFileKind(f"{destination} is a directory: only a directory can replace it",
                             data={"kind": "dir"})  # fmt: skip
    if exc.errno == errno.ENOTDIR:
        return WrongFileKind(f"{destination} is not a directory: a directory cannot replace it",
                             data={"kind": "file"})  # fmt: skip
    if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
        return WrongFileKind(f"{destination} is a directory that is not empty: a move replaces "
                             "only an empty one", data={"kind": "dir"})  # fmt: skip
    return fs_error(source, exc)
