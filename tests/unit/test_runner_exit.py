"""A service process stopped by SIGTERM (controlplane/process/runner.py) leaves the interpreter no
heap to collect on its way out: `fleet up` stops its services one after another, so what each
spends exiting after ``service.stopped`` is spent again by every Ctrl-C and every test's stack."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: A service that does nothing: started, it says so and waits for its stop; stopped, it says
#: what the collector still tracks (``gc.get_freeze_count``: the objects exit will not collect).
SERVICE = """
import gc, sys
from controlplane.process.runner import run_service

async def build(settings, stack):
    print("started", flush=True)

run_service("probe", build)
print("frozen", gc.get_freeze_count(), flush=True)
"""


def test_a_stopped_service_freezes_its_heap_before_the_interpreter_exits() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVICE],
        cwd=ROOT,
        env=env | {"PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "started\n"  # its signal handlers are installed
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    label, count = out.split()
    assert label == "frozen"
    assert int(count) > 0, "the heap is left for the interpreter's exit to collect"
