"""The platform's half of daemon/supervision/nodump.py: an execute-only copy of the dynamic loader
for a
machine's supervisor and daemon, blind to the machine's ``/etc/ld.so.preload``
(base/loader.py); the token reaches them on a pipe (base/tokenfd.py)."""

from __future__ import annotations

import os
from pathlib import Path

from base.loader import LoaderUnknown, write_blind
from base.tokenfd import TOKEN_FD, token_pipe
from contracts.errors import ProviderError

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
    """``<data-dir>/sandbox/ld-blind-*.so``: the loader, blind to a preload file, mode 0111.
    Exec-ing it makes a process that cannot read it (a machine's: no capabilities)
    non-dumpable from its first instruction."""
    source = host_loader()
    st = source.stat()  # a new glibc brings a new loader: a copy of its own
    target = data_dir / "sandbox" / f"ld-blind-{st.st_size}-{int(st.st_mtime)}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            write_blind(source, target)
        except LoaderUnknown as exc:
            raise ProviderError(f"{source}: {exc}") from None
    return target
