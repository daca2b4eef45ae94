"""The platform's half of daemon/nodump.py: an execute-only copy of the dynamic loader for a
machine's supervisor and daemon; the token reaches them on a pipe (core/tokenfd.py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from core.tokenfd import TOKEN_FD, token_pipe

__all__ = ["SANDBOX_LOADER", "TOKEN_FD", "execute_only_loader", "host_loader", "token_pipe"]

#: Where a sandboxed machine sees the loader (a read-only bind: it cannot chmod it).
SANDBOX_LOADER = "/run/fleet/ld.so"


def host_loader() -> Path:
    """The dynamic loader this interpreter was started by (the one the daemon's Python needs)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split(maxsplit=5)[-1].strip()
            if path.startswith("/") and os.path.basename(path).startswith("ld-"):
                return Path(path)
    raise RuntimeError("no dynamic loader in /proc/self/maps (a static interpreter?)")


def execute_only_loader(data_dir: Path) -> Path:
    """``<data-dir>/sandbox/ld-*.so``: the loader, mode 0111. Exec-ing it makes a process that
    cannot read it (a machine's: no capabilities) non-dumpable from its first instruction."""
    source = host_loader()
    st = source.stat()  # a new glibc brings a new loader: a copy of its own
    target = data_dir / "sandbox" / f"ld-{st.st_size}-{int(st.st_mtime)}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o111)  # noqa: S103 - execute-only is the point: nobody may read it
        tmp.replace(target)
    return target
