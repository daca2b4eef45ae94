"""What a hostile machine puts in its home for root to trip on, and the canary that shows
whether root followed it: a directory of root-owned files on the host, snapshotted before and
compared after (owners, modes, contents)."""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Run as ``python -c SWAP a b``: exchanges ``a`` and ``b`` (a directory and a link) in a tight
#: ``renameat2(RENAME_EXCHANGE)`` loop until killed; prints ``swapping`` once it runs. Only
#: the standard library: it runs inside machines too.
SWAP = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
a, b = (os.fsencode(p) for p in sys.argv[1:3])
AT_FDCWD, RENAME_EXCHANGE = -100, 2
if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0:
    sys.exit(f"renameat2: {os.strerror(ctypes.get_errno())}")
print("swapping", flush=True)
while True:
    libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
"""

#: The kinds of hostile entry every root operation is tried against.
KINDS = ("symlink", "fifo", "device", "huge", "swap")
HUGE_BYTES = 10 << 30


class Canary:
    """Root-owned files (0600, in 0700 directories) with known contents, outside any home."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "sub").mkdir(parents=True)
        for i in range(50):
            path = root / ("sub" if i % 2 else ".") / f"secret-{i}"
            path.write_text(f"root-only {i}\n")
            path.chmod(0o600)
        (root / "daemon.lock").write_text(f"{os.getpid()}\n")
        (root / "daemon.lock").chmod(0o600)
        for d in (root, root / "sub"):
            os.chown(d, 0, 0)
            d.chmod(0o700)
        self.before = self.snapshot()

    @property
    def a_file(self) -> Path:
        return self.root / "secret-0"

    def snapshot(self) -> dict[str, tuple[int, int, int, str]]:
        found = {}
        for path in [self.root, *sorted(self.root.rglob("*"))]:
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            found[str(path.relative_to(self.root))] = (st.st_uid, st.st_gid, st.st_mode, digest)
        return found

    def changed(self) -> dict[str, tuple[object, object]]:
        """What differs from the first snapshot ({} when root followed nothing)."""
        now = self.snapshot()
        return {k: (self.before.get(k), now.get(k)) for k in {*self.before, *now}
                if self.before.get(k) != now.get(k)}  # fmt: skip


def plant(kind: str, at: Path, canary: Canary) -> None:
    """Put a hostile ``kind`` of entry at ``at`` (as root: a test plays the machine; a device
    node is what a machine cannot make itself, so the test places one)."""
    at.parent.mkdir(parents=True, exist_ok=True)
    if kind == "symlink":
        at.symlink_to(canary.a_file)
    elif kind == "fifo":
        os.mkfifo(at)
    elif kind == "device":
        os.mknod(at, 0o666 | 0o020000, os.makedev(1, 5))  # /dev/zero's
    elif kind == "huge":
        with open(at, "wb") as f:
            f.truncate(HUGE_BYTES)  # sparse
    else:
        raise ValueError(kind)


@contextmanager
def swapping(a: Path, b: Path) -> Iterator[None]:
    """``a`` and ``b`` exchanged in a tight loop by another process while the block runs."""
    proc = subprocess.Popen([sys.executable, "-c", SWAP, str(a), str(b)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"swapping\n"
        yield
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    if a.is_symlink():  # as it was: the directory at ``a``
        os.rename(a, str(a) + ".tmp")
        os.rename(b, a)
        os.rename(str(a) + ".tmp", b)


def bounded(code: str, *args: str, timeout_s: float = 30.0, memory_mb: int = 1024) -> str:
    """``code`` run by a child Python with ``args``, its output; an AssertionError if it does
    not end within ``timeout_s`` (a FIFO opened) or needs more than ``memory_mb`` (a device or a
    huge file read whole): the test fails instead of hanging or exhausting the host."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))

    try:
        out = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True,
            timeout=timeout_s, preexec_fn=limit, cwd=Path(__file__).parent.parent, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running after {timeout_s} s (blocked)") from None
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout
