"""What the file tools say of one entry of the home: its kind, size, mode, owner and group, as
``lstat`` sees it (a link is described, never followed)."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import stat

from contracts.daemon.files import DirEntry, FileKind
from contracts.errors import FileNotFound
from daemon.files.homefs import fs_error

#: A user or group name is shown up to this many characters: the machine writes its own
#: /etc/passwd, and a name there could be as long as a line (Linux's LOGIN_NAME_MAX).
_NAME_MAX = 256


def kind_of(mode: int) -> FileKind:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def text(name: str) -> str:
    """A file name as JSON can carry it: bytes that are not UTF-8 become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class Owners:
    """User and group names by number, each looked up once per call: a listing of thousands of
    one user's files reads the machine's /etc/passwd once, and a user added since the last
    call is named by the next (a cache for the daemon's life would keep calling it a number)."""

    def __init__(self) -> None:
        self._users: dict[int, str] = {}
        self._groups: dict[int, str] = {}

    def user(self, uid: int) -> str:
        name = self._users.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name[:_NAME_MAX]
            except KeyError:  # a number the machine names no one by: shown as `ls -l` does
                name = str(uid)
            self._users[uid] = name
        return name

    def group(self, gid: int) -> str:
        name = self._groups.get(gid)
        if name is None:
            try:
                name = grp.getgrgid(gid).gr_name[:_NAME_MAX]
            except KeyError:
                name = str(gid)
            self._groups[gid] = name
        return name


def entry_at(dir_fd: int, name: str, shown: str, owners: Owners | None = None,
             label: str | None = None) -> DirEntry:  # fmt: skip
    """The entry ``name`` of the directory ``dir_fd``; ``shown``: its path, for errors;
    ``label``: what the entry's ``name`` says (its path in a deep listing), else ``name``."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise FileNotFound(f"{shown}: no such file or directory") from None
    except OSError as exc:
        raise fs_error(shown, exc) from None
    owners = owners or Owners()
    kind = kind_of(st.st_mode)
    target = None
    if kind == "symlink":
        with contextlib.suppress(OSError):
            target = text(os.readlink(name, dir_fd=dir_fd))
    return DirEntry(name=text(label or name), kind=kind, size=st.st_size,
                    mode=stat.S_IMODE(st.st_mode), mtime=st.st_mtime, target=target,
                    owner=owners.user(st.st_uid), group=owners.group(st.st_gid),
                    permissions=stat.filemode(st.st_mode))  # fmt: skip
