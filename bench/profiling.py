"""Optional py-spy sampling of running processes (``python -m bench --profile DIR``)."""

from __future__ import annotations

import collections
import contextlib
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from bench.common import REPO


def py_spy() -> str | None:
    candidate = Path(sys.executable).with_name("py-spy")
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def sampled(out_dir: Path | None, pids: Mapping[str, int], tag: str) -> Iterator[None]:
    """Sample each named process with py-spy while the block runs; write collapsed stacks
    (``<tag>-<name>.txt``) and a summary of the top functions (``<tag>-<name>.top.txt``)."""
    exe = py_spy()
    if out_dir is None or exe is None or not pids:
        if out_dir is not None and exe is None:
            print("    (--profile: py-spy not found: it is a dev dependency, `./run` installs it)")
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    for name, pid in pids.items():
        raw = out_dir / f"{tag}-{name}.txt"
        argv = [exe, "record", "-p", str(pid), "-r", "100", "-f", "raw", "-o", str(raw)]
        procs[name] = (
            subprocess.Popen(
                [*argv, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            ),
            raw,
        )
    try:
        yield
    finally:
        for proc, _ in procs.values():
            proc.send_signal(signal.SIGINT)
        for name, (proc, raw) in procs.items():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if raw.exists():
                summary = top_functions(raw)
                (out_dir / f"{tag}-{name}.top.txt").write_text(summary)
                head = "\n".join(summary.splitlines()[:8])
                print(f"    profile {tag}/{name} ({raw}):\n{head}")


def top_functions(collapsed: Path, k: int = 30) -> str:
    """Self and inclusive shares of the busiest functions in py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    if not total:
        return "no samples\n"
    lines = [f"{total} samples (100/s, busy time only)", "self:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(k)]
    lines.append("inclusive:")
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in incl.most_common(k)]
    return "\n".join(lines) + "\n"


def _short(frame: str) -> str:
    # "func (path/to/site-packages/pkg/mod.py:123)" -> "func (pkg/mod.py:123)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "python3.11/", f"{REPO}/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})" if where else name
