"""What one watch watches: the inotify watches of a path (a file, a directory, or a directory
and every directory below it), and the kernel's events turned into ``FileEvent``s.

Every directory is opened by descriptor from the one above it (``O_NOFOLLOW``), from a start
reached by walking the home (daemon/files/homefs.py), and watched by that descriptor
(daemon/files/inotify.py): a link met below the watched path is reported as the entry it is, never
followed, so a watch never leads out of the home.

A recursive watch follows its tree as it changes: a directory made (or moved in) is watched at
once and what it already holds is reported as made (it may have come before its watch did: a
name may then be reported twice); one renamed within the tree keeps its watches under its new
name; one moved out of it, or removed, loses them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator

from contracts.daemon.watch import MAX_WATCHED_DIRS, FileEvent, FileEventType
from contracts.errors import FileNotFound, FleetError, ToolError, WrongFileKind
from daemon.files import homefs
from daemon.files.homefs import Swapped, fs_error, retrying
from daemon.files.inotify import (
    IN_ATTRIB,
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_EXCL_UNLINK,
    IN_IGNORED,
    IN_ISDIR,
    IN_MODIFY,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_ONLYDIR,
    IN_Q_OVERFLOW,
    IN_UNMOUNT,
    STRUCTURE,
    Inotify,
    InotifyError,
    RawEvent,
)

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_ANY = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
#: The kernel events a kind needs beyond those that shape the tree.
_ASKS: dict[FileEventType, int] = {"write": IN_MODIFY, "chmod": IN_ATTRIB}
#: Where a tree's events go, as they are read.
Emit = Callable[[FileEvent], None]


def mask_for(kinds: frozenset[FileEventType]) -> int:
    """What to ask the kernel for, to report ``kinds``."""
    mask = STRUCTURE | IN_EXCL_UNLINK
    for kind, bits in _ASKS.items():
        if kind in kinds:
            mask |= bits
    return mask


def kind_of(mask: int) -> FileEventType | None:
    """The kind of a kernel event about a name in a watched directory (None: not one)."""
    if mask & (IN_CREATE | IN_MOVED_TO):
        return "create"
    if mask & IN_MODIFY:
        return "write"
    if mask & IN_DELETE:
        return "remove"
    if mask & IN_MOVED_FROM:
        return "rename"
    if mask & IN_ATTRIB:
        return "chmod"
    return None


class WatchTree:
    """The watches of one path, on one inotify instance (owned: closed by ``close``)."""

    def __init__(self, home: str, path: str, *, recursive: bool,
                 kinds: frozenset[FileEventType], emit: Emit) -> None:  # fmt: skip
        self._home = home
        self._recursive = recursive
        self._kinds = kinds
        self._mask = mask_for(kinds)
        self._emit = emit
        self._paths: dict[int, str] = {}
        #: Directories renamed away in this batch, by the kernel's cookie: their new name
        #: comes with the same cookie, or they left the tree.
        self._moving: dict[int, str] = {}
        self._shown = path
        self._started = False
        self.inotify = Inotify()
        #: Set once the watched path itself is gone (the watch is over).
        self.gone = False
        try:
            self.root, self.root_is_dir = retrying(lambda: self._watch_root(path))
        except BaseException:
            self.inotify.close()
            raise
        self._started = True

    @property
    def watched_dirs(self) -> int:
        return len(self._paths) if self.root_is_dir else 0

    def close(self) -> None:
        self.inotify.close()

    # --- setting watches ------------------------------------------------------------------
    def _watch_root(self, path: str) -> tuple[str, bool]:
        with homefs.walk(self._home, path, follow_last=True) as found:
            if found.name is None:
                fd = os.dup(found.dir_fd)
            else:
                fd = _open(found.dir_fd, found.name, _ANY, found.shown)
            try:
                mode = os.fstat(fd).st_mode
                if stat.S_ISLNK(mode):
                    raise Swapped  # a link swapped in after the walk: walk again
                if not stat.S_ISDIR(mode):
                    self._add(fd, found.shown, self._mask)
                    return found.shown, False
                os.close(fd)
                fd = _open(found.dir_fd, found.name, _DIR, found.shown) if found.name else \
                    os.dup(found.dir_fd)  # fmt: skip
                self._add_dir(fd, found.shown, report=False)
                return found.shown, True
            finally:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _add(self, fd: int, path: str, mask: int) -> int:
        try:
            wd = self.inotify.watch_fd(fd, mask)
        except InotifyError as exc:
            raise ToolError(f"cannot watch {path}: {exc.strerror}", data={"errno": exc.errno}) \
                from None  # fmt: skip
        self._paths[wd] = path
        return wd

    def _add_dir(self, fd: int, path: str, *, report: bool) -> None:
        """Watch the directory open on ``fd`` (and, recursively, those below it); ``report``:
        what it holds is reported as made (it came before its watch). Past
        ``MAX_WATCHED_DIRS``: ToolError at the watch's start, an ``overflow`` later."""
        if len(self._paths) >= MAX_WATCHED_DIRS:
            if not self._started:
                raise ToolError(f"{self._shown}: more than {MAX_WATCHED_DIRS} directories to "
                                "watch; watch a smaller tree",
                                data={"limit": MAX_WATCHED_DIRS})  # fmt: skip
            self._emit(FileEvent(type="overflow", path=self.root, is_dir=True))
            return
        self._add(fd, path, self._mask | IN_ONLYDIR)
        if not self._recursive:
            return
        for child, is_dir, child_fd in _entries(fd, path):
            if report:
                self._report("create", child, is_dir)
            if child_fd is not None:
                with _closing(child_fd):
                    self._add_dir(child_fd, child, report=report)

    def _watch_new_dir(self, path: str) -> None:
        """A directory that appeared in the tree: watched, and what it holds reported."""

        def attempt() -> None:
            with homefs.walk(self._home, path) as found:
                dir_fd, name = found.entry()
                with _closing(_open(dir_fd, name, _DIR, found.shown)) as fd:
                    self._add_dir(fd, path, report=True)

        # Gone again already (its removal is reported), or no longer a directory: nothing to do.
        with contextlib.suppress(FleetError, OSError):
            retrying(attempt)

    # --- events ---------------------------------------------------------------------------
    def handle(self, batch: list[RawEvent]) -> None:
        """One read's events, reported; the tree follows what they changed."""
        for event in batch:
            self._one(event)
            if self.gone:
                return
        for old in self._moving.values():  # renamed away, and no new name here: left
            self._forget_below(old)
        self._moving.clear()

    def _one(self, event: RawEvent) -> None:
        if event.mask & IN_Q_OVERFLOW:
            self._emit(FileEvent(type="overflow", path=self.root, is_dir=self.root_is_dir))
            return
        base = self._paths.get(event.wd)
        if base is None:
            return  # a watch dropped since (its directory left the tree)
        if event.mask & (IN_IGNORED | IN_UNMOUNT | IN_DELETE_SELF | IN_MOVE_SELF):
            self._self_event(event, base)
            return
        is_dir = bool(event.mask & IN_ISDIR)
        path = f"{base.rstrip('/')}/{event.name}" if event.name else base
        kind = kind_of(event.mask)
        if kind is not None:
            self._report(kind, path, is_dir)
        if is_dir and self._recursive:
            self._follow_dir(event, path)

    def _self_event(self, event: RawEvent, base: str) -> None:
        """An event about a watched path itself: only the root's is news (a directory below
        was reported by its parent); the root's removal ends the watch."""
        is_root = base == self.root
        if event.mask & IN_IGNORED:
            self._paths.pop(event.wd, None)
            self.gone = self.gone or is_root
            return
        if not is_root:
            return
        if event.mask & IN_DELETE_SELF:
            self._report("remove", base, self.root_is_dir)
        elif event.mask & IN_MOVE_SELF:
            self._report("rename", base, self.root_is_dir)
        self.gone = True

    def _follow_dir(self, event: RawEvent, path: str) -> None:
        if event.mask & IN_MOVED_FROM:
            self._moving[event.cookie] = path
        elif event.mask & IN_MOVED_TO:
            old = self._moving.pop(event.cookie, None)
            if old is None:
                self._watch_new_dir(path)
            else:
                self._renamed(old, path)
        elif event.mask & IN_CREATE:
            self._watch_new_dir(path)
        elif event.mask & IN_DELETE:
            self._forget_below(path)

    def _renamed(self, old: str, new: str) -> None:
        for wd, path in list(self._paths.items()):
            if path == old or path.startswith(old + "/"):
                self._paths[wd] = new + path[len(old) :]

    def _forget_below(self, top: str) -> None:
        for wd, path in list(self._paths.items()):
            if path == top or path.startswith(top + "/"):
                self.inotify.unwatch(wd)
                del self._paths[wd]

    def _report(self, kind: FileEventType, path: str, is_dir: bool) -> None:
        if kind in self._kinds:
            self._emit(FileEvent(type=kind, path=path, is_dir=is_dir))


def _entries(fd: int, path: str) -> Iterator[tuple[str, bool, int | None]]:
    """(path, is a directory, its descriptor) of each entry of the directory open on ``fd``;
    a directory's descriptor is None when it could not be opened as one (gone, or swapped for
    a link meanwhile: never followed)."""
    with os.scandir(fd) as entries:
        for entry in entries:
            is_dir = entry.is_dir(follow_symlinks=False)
            child_fd = None
            if is_dir:
                with contextlib.suppress(OSError):
                    child_fd = os.open(entry.name, _DIR, dir_fd=fd)
            yield f"{path.rstrip('/')}/{entry.name}", is_dir, child_fd


def _open(dir_fd: int, name: str, flags: int, shown: str) -> int:
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        raise FileNotFound(f"{shown}: no such file or directory") from None
    except OSError as exc:
        if flags & os.O_DIRECTORY and homefs.link_target(dir_fd, name) is not None:
            raise Swapped from None
        if exc.errno == errno.ENOTDIR:  # it is no longer a directory
            raise WrongFileKind(f"{shown} is not a directory", data={"kind": "file"}) from None
        raise fs_error(shown, exc) from None


@contextlib.contextmanager
def _closing(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
