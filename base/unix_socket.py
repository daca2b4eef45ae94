"""Paths for unix sockets: ``sockaddr_un`` holds 108 bytes, and a data directory (a test's
temporary directory, a deep checkout) can be longer than that."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

#: Below sockaddr_un's 108 bytes, with room for the terminating NUL.
MAX_SOCKET_PATH = 100


def short_socket_path(directory: Path, name: str, private: str) -> Path:
    """``directory/name`` if short enough to bind, else ``<directory's digest>.sock`` (the same
    for the same directory: one socket per directory) in ``<tmp>/<private>-<uid>``, a
    directory of this user alone: PermissionError if it is someone else's or open to others (a
    socket there could be replaced under the server's clients)."""
    path = directory / name
    if len(str(path)) <= MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha256(str(directory).encode()).hexdigest()[:16]
    own = Path(tempfile.gettempdir()) / f"{private}-{os.getuid()}"
    own.mkdir(mode=0o700, exist_ok=True)
    st = own.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise PermissionError(f"{own} is not a private directory of this user")
    return own / f"{digest}.sock"
