"""``~/.fleet/.env`` as the daemon reads it: re-read only when it changed.

The format itself (and its parser) is ``base.dotenv``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from base.dotenv import parse_env_file

log = structlog.get_logger(__name__)

#: (inode, size, mtime_ns): a rename-into-place always changes the inode, an edit in place
#: changes size or mtime.
Signature = tuple[int, int, int] | None


def signature(path: Path) -> Signature:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class EnvFile:
    """``~/.fleet/.env``, re-read only when it changed. A file that does not parse is logged
    and the last good contents are used: a bad push must not strip a running dev server of
    its whole environment."""

    path: Path
    _seen: Signature = None
    _values: dict[str, str] = field(default_factory=dict)
    #: The sha256 of the contents ``load`` last returned (None: no file). A rewrite of the
    #: same bytes (a no-op push: new inode and mtime) leaves it as it is.
    digest: str | None = None

    def load(self) -> dict[str, str]:
        sig = signature(self.path)
        if sig == self._seen:
            return dict(self._values)
        self._seen = sig
        try:
            raw = self.path.read_bytes() if sig is not None else None
            self._values = parse_env_file(raw.decode() if raw is not None else "")
            self.digest = hashlib.sha256(raw).hexdigest() if raw is not None else None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            log.warning("process.env_invalid", path=str(self.path), error=str(exc))
        return dict(self._values)
