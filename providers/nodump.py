"""The platform's half of daemon/nodump.py: an execute-only copy of the dynamic loader for a
machine's supervisor and daemon, and the pipe that carries the machine's token to them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

#: Where a sandboxed machine sees the loader (a read-only bind: it cannot chmod it).
SANDBOX_LOADER = "/run/fleet/ld.so"
#: The descriptor the machine's first process finds the token on (FLEET_MACHINE_TOKEN_FD).
TOKEN_FD = 3


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


def token_pipe(token: str) -> int:
    """The read end of a pipe holding ``token`` (and nothing more to come); the caller hands it
    to the machine's first process and closes it."""
    read, write = os.pipe()
    try:
        os.write(write, token.encode())
    finally:
        os.close(write)
    if read == TOKEN_FD:  # posix_spawn's dup2 onto itself would keep close-on-exec
        read, old = os.dup(read), read
        os.close(old)
    return read
