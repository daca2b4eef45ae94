"""tests/reaper.py: the suite runs under it (./run); it reaps orphans and exits as its command."""

from __future__ import annotations

import subprocess
import sys

#: Run under the reaper: a shell leaves an orphan (``sleep``); the orphan must be the reaper's
#: child (the command's parent), and gone (reaped, not a zombie) soon after it is killed.
ORPHAN = """
import os, signal, subprocess, sys, time
orphan = int(subprocess.run(["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"], capture_output=True,
                            text=True).stdout)
status = open(f"/proc/{orphan}/status").read()
ppid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
print("adopted" if ppid == os.getppid() else f"adopted by {ppid}, not {os.getppid()}")
os.kill(orphan, signal.SIGKILL)
deadline = time.monotonic() + 30
while os.path.exists(f"/proc/{orphan}") and time.monotonic() < deadline:
    time.sleep(0.01)
print("reaped" if not os.path.exists(f"/proc/{orphan}") else "left a zombie")
"""


def reaper(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tests.reaper", *argv], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


def test_it_exits_as_its_command_does() -> None:
    assert reaper("sh", "-c", "exit 3").returncode == 3
    assert reaper("sh", "-c", "kill -TERM $$").returncode == 128 + 15
    assert reaper().returncode == 2


def test_an_orphan_of_its_command_is_its_own_and_is_reaped() -> None:
    done = reaper(sys.executable, "-c", ORPHAN)
    assert (done.stdout.split(), done.returncode) == (["adopted", "reaped"], 0), done.stderr
