"""What every benchmark shares: figures and the report, the machine they ran on, temp dirs.

Servers and `fleet up` are in ``bench.stack``, daemons and their clients in ``bench.daemons``,
/proc measurements in ``bench.procstat``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import msgspec
from aiohttp import web

REPO = Path(__file__).resolve().parent.parent


# --- figures ----------------------------------------------------------------------------------
@dataclass
class Figure:
    """One measured figure, with the baseline measured in the same run and the target."""

    bench: str
    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    #: "ratio" (value / baseline) or "" (no baseline for this figure).
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, fig: Figure) -> Figure:
        self.figures.append(fig)
        print("   ", format_figure(fig), flush=True)
        return fig

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"    - {text}", flush=True)

    def to_json(self) -> bytes:
        return msgspec.json.encode(
            {
                "figures": [asdict(f) | {"ratio": f.ratio} for f in self.figures],
                "skipped": self.skipped,
                "notes": self.notes,
            }
        )


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s" and value < 1:
        return f"{value * 1000:.1f} ms" if value >= 0.01 else f"{value * 1e6:.0f} µs"
    if unit in ("calls/s", "machines/s"):
        return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}"
    if unit == "MB":
        return f"{value:.1f} MB"
    return f"{value:.2f} {unit}"


def format_figure(f: Figure) -> str:
    parts = [f"{f.name:<46} {fmt(f.value, f.unit):>14}"]
    if f.baseline is not None:
        parts.append(f"  {f.baseline_name} {fmt(f.baseline, f.unit)}")
        if f.ratio is not None:
            parts.append(f"  = {f.ratio:.2f}x")
    if f.target:
        parts.append(f"  target {f.target}: {verdict(f.met)}")
    if f.note:
        parts.append(f"  ({f.note})")
    return "".join(parts)


def verdict(met: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "n/a"}[met]


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values")
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


# --- the machine ------------------------------------------------------------------------------
def machine_description() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    nats_version = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        nats_bin = Path(sys.executable).with_name("nats-server")
        out = subprocess.run([str(nats_bin), "--version"], capture_output=True, text=True)
        nats_version = out.stdout.strip() or out.stderr.strip()
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        commit = f"{head}{' (with local changes)' if dirty else ''}" if head else commit
    return {
        "commit": commit,
        "cpus": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "ram": mem,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "nats-server": nats_version,
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
    }


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """``app`` served on a port of this host's loopback the kernel gives: its base URL."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def temp_dir(keep: bool = False, base: Path | None = None) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fleet-bench-", dir=base))
    try:
        yield path
    finally:
        if keep:
            print(f"    (kept {path})")
        else:
            shutil.rmtree(path, ignore_errors=True)
