"""Benchmark 27's reported rows of what gVisor costs a user's everyday work, not goals: ``git
status`` in a 10,000-file repository and a 100 MiB HTTP download, each timed inside a gvisor
machine and inside a namespaces machine of the same stack, alternating, in the same run.

- ``git status``: a repository of 10,000 small files in 100 directories, made and committed in
  each machine's home by the machine's uid, on the host (off the clock: made inside a gvisor
  machine it took minutes, every file through its gofer), then ``git status --porcelain``
  timed inside the machine (``time.perf_counter`` around it, so the exec's own round trip is
  not counted).
- the download: ``big.bin`` (100 MiB) from the benchmark's own outside host (bench/outside.py,
  a network namespace of its own with a static HTTP server), read to nowhere inside the machine
  (bench/netns.py's ``DOWNLOAD``); a gvisor machine's traffic crosses gVisor's network stack
  and pasta, a namespaces machine's its namespace and pasta.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
from pathlib import Path

from bench.common import Report
from bench.gvisor_steps import Steps, figure, p50
from bench.netns import BIG_MIB, DOWNLOAD
from bench.warm_pool import _Side
from contracts.gateway.rpc import MACHINES_EXEC
from contracts.gateway.types import MachineExecParams

FILES = 10_000
#: Makes the repository in the machine's home: 100 directories of 100 files, committed.
MAKE_REPO = f"""
import os, subprocess
os.makedirs('big-repo', exist_ok=True)
os.chdir('big-repo')
for d in range(100):
    os.makedirs(f'd{{d}}', exist_ok=True)
    for f in range({FILES} // 100):
        with open(f'd{{d}}/f{{f}}.txt', 'w') as out:
            out.write(f'{{d}} {{f}}\\n')
git = ['git', '-c', 'user.name=bench', '-c', 'user.email=bench@fleetd.invalid']
subprocess.run([*git, 'init', '-q'], check=True)
subprocess.run([*git, 'add', '-A'], check=True)
subprocess.run([*git, 'commit', '-qm', 'files'], check=True)
"""
#: ``git status`` in it, timed inside the machine; prints the seconds it took.
GIT_STATUS = """
import subprocess, time
t0 = time.perf_counter()
subprocess.run(['git', '-C', 'big-repo', 'status', '--porcelain'], check=True,
               stdout=subprocess.DEVNULL)
print(time.perf_counter() - t0)
"""


async def _python(side: _Side, mid: str, script: str, *args: str) -> str:
    done = await side.gw.call(MACHINES_EXEC, MachineExecParams(
        machine_id=mid, command=["python3", "-c", script, *args], timeout_s=900))  # fmt: skip
    if done.exit_code != 0:
        raise RuntimeError(f"machine {mid}: exit {done.exit_code}: {done.stderr[-300:]}")
    return done.stdout


def _make_repo(machine_dir: Path) -> None:
    """``MAKE_REPO`` run on the host as the machine's uid (never root: nothing of the machine's
    is followed as root), in a directory of its own that uid can reach (the data directory
    may be closed to it), then moved into its home."""
    uid = int((machine_dir / "uid").read_text())
    with tempfile.TemporaryDirectory(prefix="fleet-bench-repo-") as tmp:
        os.chown(tmp, uid, uid)
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp}
        # The system's Python: the platform's may be where the machine's uid cannot reach.
        made = subprocess.run(["/usr/bin/python3", "-I", "-c", MAKE_REPO], cwd=tmp, env=env,
                              user=uid, group=uid, extra_groups=[], timeout=300,
                              start_new_session=True, capture_output=True, text=True)  # fmt: skip
        if made.returncode != 0:
            raise RuntimeError(f"the repository was not made: {made.stderr[-300:]}")
        os.rename(Path(tmp) / "big-repo", machine_dir / "home" / "big-repo")


async def measure(side: _Side, machines: dict[str, str], url: str, rounds: int,
                  times: dict[str, list[float]]) -> None:  # fmt: skip
    """``machines``: runtime → a ready machine of it. Samples into ``times``."""
    for mid in machines.values():
        await asyncio.to_thread(_make_repo, side.up.data_dir / "machines" / mid)
        await _python(side, mid, GIT_STATUS)  # off the clock: its index refreshed there
    for runtime in machines:
        times[f"{runtime} git status"], times[f"{runtime} download"] = [], []
    for _ in range(rounds):
        for runtime, mid in machines.items():
            took = float(await _python(side, mid, GIT_STATUS))
            times[f"{runtime} git status"].append(took)
            took = float(await _python(side, mid, DOWNLOAD, url))
            times[f"{runtime} download"].append(BIG_MIB / took)


def report_costs(report: Report, steps: Steps, times: dict[str, list[float]], note: str) -> None:
    figure(report, steps, "costs", f"git status, {FILES:,}-file repository p50, gvisor",
           p50(times, "gvisor git status"), "s", p50(times, "namespaces git status"),
           "namespaces", note=f"{note}; timed inside the machine")  # fmt: skip
    figure(report, steps, "costs", f"{BIG_MIB} MiB HTTP download in a machine p50, gvisor",
           p50(times, "gvisor download"), "MiB/s", p50(times, "namespaces download"),
           "namespaces", note=f"{note}; from the benchmark's outside host")  # fmt: skip
