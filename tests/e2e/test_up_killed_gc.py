"""Nothing outlives `fleet up`, even killed outright: with a namespaces machine, a gvisor machine
and a warm pool's machine running (and its keeper killed once, and started again), `fleet up`
is SIGKILLed; every process of its machines
(bwrap sandboxes, runsc's sandboxes and gofers, their pastas) ends by itself, through the
keeper the kernel signals (fleet/up/keeper.py); its data dir then removed, `fleet gc` leaves
nothing of it that the suite's leftovers check (tests/leftovers.py) would find. A normal stop
leaves no pasta either, a pooled machine's included."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from base import procinfo
from base.lifeline import recorded
from fleet.up import gc, keeper
from providers.sandbox import NETNS_OF
from tests import leftovers
from tests.e2e.conftest import FLEET, FleetUp, ok, read_until, start_fleet_up
from tests.waiters import still_running_after, wait_until

#: How long the keeper may take to stop the machines (their daemons' grace, runsc's deletes).
ENDED_WITHIN_S = 90.0


def machine(up: FleetUp, runtime: str) -> None:
    """A ready machine of ``runtime`` (an instance has one machine)."""
    iid = json.loads(ok(up.cli("--json", "instances", "create", runtime)))["id"]
    ok(up.cli("machines", "create", "--instance", iid, "--runtime", runtime, "--wait",
              timeout=300))  # fmt: skip


def stack_processes(data: Path) -> list[gc.Process]:
    """Every process that names the stack (its pastas by their mark), but `fleet up`'s own."""
    return gc.naming(data)


def helpers(found: list[gc.Process]) -> set[str]:
    return {os.path.basename(p.argv[0]) for p in found if p.argv}


@pytest.mark.timeout(900)
def test_a_killed_fleet_up_leaves_no_machine_process_and_gc_leaves_nothing(
    tmp_path: Path,
) -> None:
    data = (tmp_path / "data").resolve()
    # One pooled machine: a pool slot's pasta and sandbox are a provisioner's, not a machine's.
    up = start_fleet_up(data, "--runtime", "gvisor", env={"FLEET_WARM_POOL": "local=1"},
                        timeout=300)  # fmt: skip
    try:
        machine(up, "namespaces")
        machine(up, "gvisor")
        # A keeper someone killed is started again: the tie holds while `fleet up` runs.
        os.kill(recorded(data / keeper.RECORD)[0][0], signal.SIGKILL)
        read_until(up.proc, "restarted the keeper")
        running = [p for p in stack_processes(data) if p.pid != up.proc.pid]
        pastas = [p for p in running if any(
            f"{NETNS_OF}=".encode() in f for f in gc.facts(p.pid))]  # fmt: skip
        # The machines' helpers are there, each named by the stack (pasta by its mark).
        assert {"bwrap", "runsc-sandbox", "runsc-gofer"} <= helpers(running), running
        assert len(pastas) >= 2, running
        up.proc.kill()
        up.proc.wait()
        left = still_running_after([p.pid for p in running], ENDED_WITHIN_S)
        assert left == [], [str(p) for p in running if p.pid in left]
    finally:
        if up.proc.poll() is None:
            up.stop(timeout=120)
        if up.proc.stdout is not None:
            up.proc.stdout.close()
    shutil.rmtree(data)
    # Its stack alone: other sessions on this host have stacks of their own.
    done = subprocess.run([FLEET, "gc", "--data-dir", str(data)], capture_output=True,
                          text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert leftovers.find(tmp_path, settle_s=0) == []
    assert not [p for p in running if procinfo.is_alive(p.pid, p.ticks)]


@pytest.mark.timeout(600)
def test_a_stopped_fleet_up_leaves_no_pasta_of_a_machine_from_its_pool(tmp_path: Path) -> None:
    """Ctrl-C with a gvisor machine that came from the warm pool (its pasta is its slot's)."""
    data = (tmp_path / "data").resolve()
    up = start_fleet_up(data, "--runtime", "gvisor", env={"FLEET_WARM_POOL": "local=1"},
                        timeout=300)  # fmt: skip
    try:
        asyncio.run(wait_until(lambda: any(data.glob("pool/*/*/*/up")), timeout=240))
        machine(up, "gvisor")
        assert "pasta" in helpers(stack_processes(data))
    finally:
        assert up.stop(timeout=120) == 0
    assert leftovers.find(tmp_path, settle_s=0) == []
