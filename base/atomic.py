"""Files other processes read whole: written beside their place and renamed over it, so that a
reader, or the writer killed half-way, never sees a file that is empty or cut short."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def replace_file(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """``path`` holds ``data`` (and ``mode``), all at once. The temporary name is unique: two
    writers of one path each rename a complete file. Not fsynced: what it guards against is a
    process killed mid-write, not the host losing power."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # the umask trimmed the mode os.open set
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
