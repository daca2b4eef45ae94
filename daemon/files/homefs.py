"""Paths in the machine's home, resolved so that nothing can lead out of it.

Checking a path (its real path in the home) and then opening it by name leaves a window:
between the check and the open, a directory on the way may be swapped for a link that leads
out (the machine runs untrusted code, which can do that in a loop). Here a path is walked one
component at a time with file descriptors: each directory is opened relative to the one
before with ``O_NOFOLLOW``, and a link met on the way is read and followed by hand (at most
``_MAX_LINKS``), its target walked the same way: an absolute target only when it lies in the
home, ``..`` never above the home. What the caller finally opens is one name relative to a
directory descriptor that was reached that way, again with ``O_NOFOLLOW``; a link swapped in at
that last moment makes the open fail (ELOOP) and the walk starts over.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from contracts.daemon.machine_files import FLEET_DIR, LOCK_FILE, STATE_FILE
from contracts.errors import (
    BadPath,
    FileNotFound,
    FleetError,
    InvalidParams,
    ToolError,
    WrongFileKind,
)

#: As the kernel's own limit on links in one path lookup (ELOOP beyond it).
_MAX_LINKS = 40
T = TypeVar("T")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class Found:
    """Where a path led: ``dirs`` the directories from the home down (descriptors owned, with
    their names), and ``name`` the last component in ``dirs[-1]`` (None: the path names the
    directory ``dirs[-1]`` itself). ``shown`` is the path as the caller gave it, resolved
    lexically: what answers and errors say."""

    dirs: list[tuple[int, str]]
    name: str | None
    shown: str
    field: str = "$.path"
    _closed: bool = False

    @property
    def dir_fd(self) -> int:
        return self.dirs[-1][0]

    def entry(self) -> tuple[int, str]:
        """(directory descriptor, name) of the thing itself; the home itself has none."""
        if self.name is not None:
            return self.dir_fd, self.name
        if len(self.dirs) < 2:
            raise InvalidParams(f"{self.shown!r} is the home itself", field=self.field)
        return self.dirs[-2][0], self.dirs[-1][1]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            for fd, _ in self.dirs:
                with contextlib.suppress(OSError):
                    os.close(fd)


def lexical(home: str, path: str, field: str) -> tuple[str, list[str]]:
    """The path, normalized (``~``, relative, absolute in the home; no NUL, no ``..`` out),
    and its components below the home."""
    target = lexical_target(home, path, field)
    root = _roots(home)[0]
    parts = [p for p in target[len(root) :].split("/") if p]
    if any(len(os.fsencode(p)) > NAME_MAX for p in parts):  # no syscall would take it
        raise bad_path(target, errno.ENAMETOOLONG)
    return target, parts


def lexical_target(home: str, path: str, field: str) -> str:
    """The absolute, normalized path that ``path`` names, without looking at the file system:
    ``~`` and relative paths under the home, an absolute one as it is; InvalidParams when it
    holds a NUL, names another user's home (``~user``) or lies outside the home (the home
    itself is in it: listing it is fine, writing it is not)."""
    if path.startswith("~") and path != "~" and not path.startswith("~/"):
        raise InvalidParams(f"{path!r}: ~user paths are not supported", field=field)
    if "\0" in path:  # no file has such a name (lstat and open would raise ValueError)
        raise InvalidParams(f"{path!r}: a path cannot hold a NUL byte", field=field)
    root = _roots(home)[0]
    # As resolve_path: "~/x" and "x" lie under the home, an absolute path stays (join's rule).
    rel = path[2:] if path[:1] == "~" else path
    if rel[:1] != "/" and _NOT_PLAIN.isdisjoint(rel.split("/")):
        # Already normal ("a/b", the usual case): what normpath(join) gives, without its cost.
        target = (root if root.endswith("/") else root + "/") + rel
    else:
        target = os.path.normpath(os.path.join(home, rel))
    if target != root and not target.startswith(root.rstrip("/") + "/"):
        raise InvalidParams(f"{path!r} is not a file in the machine's home", field=field)
    return target


#: Path components that normpath would change or drop ("a//b", "./a", "a/../b", "a/").
_NOT_PLAIN = frozenset(("", ".", ".."))


@functools.lru_cache(maxsize=8)
def _roots(home: str) -> tuple[str, str]:
    """The home, normalized, and its own real path: the home is fixed for the daemon's life, so
    both are computed once (os.path.realpath lstats every component from /, bench 1)."""
    root = os.path.normpath(home)
    return root, os.path.realpath(root)


@contextlib.contextmanager
def walk(home: str, path: str, *, field: str = "$.path", follow_last: bool = False,
         make_dirs: bool = False) -> Iterator[Found]:  # fmt: skip
    """Resolve ``path`` under ``home``; ``follow_last``: a link as the last component is
    followed too (a read), else it is the thing itself (stat, remove, replace). ``make_dirs``:
    missing directories on the way are created (a write)."""
    shown, parts = lexical(home, path, field)
    found = retrying(lambda: _resolve(home, parts, shown, field, follow_last, make_dirs))
    try:
        yield found
    finally:
        found.close()


def refuse_link_out(home: str, path: str, field: str = "$.path") -> None:
    """InvalidParams when the path's last component is a link that leads out of the home. A
    write replaces such a link rather than write through it, but refuses it all the same, as
    it always has (a write to ``~/.bashrc`` linked to a file outside is a mistake or an
    attack). A link to something missing is no such link."""
    with contextlib.suppress(FileNotFound, WrongFileKind), walk(home, path, field=field,
                                                                 follow_last=True):  # fmt: skip
        pass


def _open_home(home: str) -> int:
    try:
        return os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise ToolError(f"cannot open the home {home}: {exc.strerror}") from None


def _resolve(home: str, parts: list[str], shown: str, field: str, follow_last: bool,
             make_dirs: bool) -> Found:  # fmt: skip
    found = Found([(_open_home(home), "")], None, shown, field)
    queue, links = list(parts), 0
    try:
        while queue:
            part = queue.pop(0)
            last = not queue
            if part in ("", "."):
                continue
            if part == "..":
                if len(found.dirs) == 1:
                    raise _out(shown, field)
                os.close(found.dirs.pop()[0])
                continue
            target = link_target(found.dir_fd, part)
            if target is not None and (follow_last or not last):
                links += 1
                if links > _MAX_LINKS:
                    raise bad_path(shown, errno.ELOOP)
                queue[:0] = _expand(home, target, found, shown, field)
                continue
            if last:
                found.name = part
                return found
            found.dirs.append((_open_dir(found.dir_fd, part, shown, field, make_dirs), part))
        return found  # the path ended on "." or ".." (from a link): a directory
    except BaseException:
        found.close()
        raise


def link_target(dir_fd: int, name: str) -> str | None:
    """What the link ``name`` points to; None when it is not a link (or not there)."""
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return None


def _expand(home: str, target: str, found: Found, shown: str, field: str) -> list[str]:
    """The components to walk instead of a link: a relative target from where the link is;
    an absolute one from the home (then ``found`` goes back to the home), if it lies there."""
    if not target.startswith("/"):
        return target.split("/")
    norm = os.path.normpath(target)
    for root in _roots(home):
        if norm == root or norm.startswith(root.rstrip("/") + "/"):
            while len(found.dirs) > 1:
                os.close(found.dirs.pop()[0])
            return [p for p in norm[len(root) :].split("/") if p]
    raise _out(shown, field)


def _open_dir(dir_fd: int, name: str, shown: str, field: str, make: bool) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        if not make:
            raise FileNotFound(f"{shown}: no such file or directory") from None
    except OSError as exc:
        raise _open_dir_error(dir_fd, name, shown, exc) from None
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o755, dir_fd=dir_fd)
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise _open_dir_error(dir_fd, name, shown, exc) from None


def _open_dir_error(dir_fd: int, name: str, shown: str, exc: OSError) -> Exception:
    """O_DIRECTORY|O_NOFOLLOW on a link fails with ENOTDIR (ELOOP without O_DIRECTORY): a
    link there now was swapped in since we looked, and the walk starts over."""
    if exc.errno in (errno.ENOTDIR, errno.ELOOP) and link_target(dir_fd, name) is not None:
        return Swapped()
    if exc.errno == errno.ENOTDIR:
        return WrongFileKind(f"{shown}: {name} is not a directory", data={"kind": "file"})
    return fs_error(shown, exc)


#: What a remove or a move may not take from under the daemon: its own configuration and state.
_PROTECTED = (FLEET_DIR, LOCK_FILE, STATE_FILE)


def refuse_protected(home: str, shown: str, field: str, done: str) -> None:
    """InvalidParams when ``shown`` is the daemon's own (``done``: what would have been done to
    it, for the message). A guard against mistakes (``removeFile ~/.fleet recursive``), not a
    boundary: commands on the machine can remove anything of the home anyway."""
    root = os.path.normpath(home)
    for rel in _PROTECTED:
        guarded = f"{root}/{rel}"
        if shown == guarded or (rel != FLEET_DIR and shown.startswith(guarded + "/")):
            raise InvalidParams(f"{shown!r} is the daemon's own ({rel}): not {done}",
                                field=field)  # fmt: skip


class Swapped(Exception):
    """A component became a link between our look and our open: the caller walks again."""


#: How many times a walk (or an open at its end) starts over when links keep being swapped.
_ATTEMPTS = 8


def retrying(attempt: Callable[[], T]) -> T:
    """``attempt()``, again while it raises Swapped (a race with code on the machine that
    keeps swapping links in); then an error rather than a loop without end."""
    for _ in range(_ATTEMPTS):
        try:
            return attempt()
        except Swapped:
            continue
    raise ToolError("the path kept changing while it was resolved (a link swapped in and out)")


def _out(shown: str, field: str) -> InvalidParams:
    return InvalidParams(f"{shown!r} leads out of the machine's home (a link)", field=field)


#: The longest name of one directory entry (Linux's NAME_MAX, in bytes).
NAME_MAX = 255
#: OS errors that are about the path the caller gave, not the machine: BadPath (400), by the
#: reason each stands for. (A component that is not a directory is WrongFileKind, as the walk
#: says it.)
_PATH_ERRORS = {errno.ENAMETOOLONG: ("nameTooLong", "a name in it is longer than 255 bytes"),
                errno.ELOOP: ("linkLoop", "too many levels of links")}  # fmt: skip
#: A path is shown in an error message up to this many characters.
_SHOWN = 200


def fs_error(shown: str, exc: OSError) -> FleetError:
    """The error for an OS error on a path: BadPath when the path itself cannot be used,
    else ToolError with the OS's words. The one mapping of the daemon's file tools."""
    bad = path_error(shown, exc)
    if bad is not None:
        return bad
    if exc.errno == errno.ENOTDIR:
        return WrongFileKind(f"{_short(shown)}: a component of it is not a directory",
                             data={"kind": "file"})  # fmt: skip
    return ToolError(f"{_short(shown)}: {exc.strerror or exc}", data={"errno": exc.errno})


def path_error(shown: str, exc: OSError) -> BadPath | None:
    """BadPath for an OS error about the path itself (a name too long, a link loop); None
    for any other."""
    return bad_path(shown, exc.errno) if exc.errno in _PATH_ERRORS else None


def bad_path(shown: str, code: int) -> BadPath:
    reason, words = _PATH_ERRORS[code]
    return BadPath(f"{_short(shown)}: {words}", data={"reason": reason, "errno": code})


def _short(shown: str) -> str:
    return shown if len(shown) <= _SHOWN else shown[: _SHOWN - 1] + "…"
