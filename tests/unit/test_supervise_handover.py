"""daemon/supervise.py: a stop the supervisor forwarded to a daemon that then handed over
reaches the daemon that took over too (else that one ran on until the provider's grace ran out
and the machine was SIGKILLed)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from daemon.supervise import Supervisor
from daemon.supervision.nodump import HeldIdentity
from daemon.supervision.state import DaemonState, save_state

GONE = 2**22 + 1  # above pid_max's default: no process has it


@pytest.mark.parametrize("stopping", [True, False])
def test_a_handover_while_stopping_forwards_the_stop(tmp_path: Path, stopping: bool) -> None:
    successor = subprocess.Popen(["sleep", "60"])
    try:
        save_state(tmp_path, DaemonState(
            pid=GONE, machine_id="m-0", version="0", started_at=0.0, state="stopped",
            state_reason="handing over", successor_pid=successor.pid,
        ))  # fmt: skip
        sup = Supervisor(["true"], HeldIdentity(), home=tmp_path)
        sup.current, sup.stopping = GONE, stopping
        assert sup.on_exit(GONE, 0)  # it watches the successor next
        assert sup.current == successor.pid
        if stopping:
            assert successor.wait(timeout=30) == -signal.SIGTERM
        else:
            assert successor.poll() is None
    finally:
        successor.kill()
        successor.wait()
