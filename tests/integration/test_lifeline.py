"""base.lifeline with real processes: a child ends with its parent however the parent ends,
never starts after it, and what a record names is ended (SIGKILL for one that ignores SIGTERM)
while a pid reused by another process is left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from base import procinfo
from base.lifeline import Children, die_with_parent, end_recorded, recorded
from tests.waiters import still_running_after

#: A parent that starts one child through Children, prints its pid, then waits to be killed.
PARENT = """
import sys, time
from pathlib import Path
from base.lifeline import Children
child = Children(Path(sys.argv[1])).popen(["sleep", "600"], sys.stdout.buffer, "sleeper")
print(child.pid, flush=True)
time.sleep(600)
"""


def test_a_child_ends_when_its_parent_is_sigkilled(tmp_path: Path) -> None:
    record = tmp_path / "children"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(record)], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert [(pid, label) for pid, _, label in recorded(record)] == [(child, "sleeper")]
    parent.kill()
    parent.wait()
    parent.stdout.close()
    assert still_running_after([child], timeout=2) == []
    assert recorded(record) == []


def test_a_child_whose_parent_ended_before_its_prctl_never_runs() -> None:
    argv = die_with_parent(["sleep", "600"])
    argv[argv.index(str(os.getpid()))] = "1"  # as if its parent had ended already
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert "the parent ended before the child started" in done.stderr


def test_what_a_record_names_is_ended_and_a_reused_pid_is_not(tmp_path: Path) -> None:
    stubborn = subprocess.Popen(  # ignores SIGTERM: SIGKILLed after the grace
        ["sh", "-c", "trap '' TERM; echo armed; while :; do sleep 0.1; done"],
        start_new_session=True,
        stdout=subprocess.PIPE,
    )
    assert stubborn.stdout is not None
    assert stubborn.stdout.readline() == b"armed\n"  # the trap is set: a SIGTERM now is ignored
    stranger = subprocess.Popen(["sleep", "600"])  # its pid recorded with another start time
    record = tmp_path / "children"
    ticks = procinfo.start_ticks(stubborn.pid)
    record.write_text(f"{stubborn.pid} {ticks} stubborn\n{stranger.pid} 1 someone-else\n")
    try:
        assert end_recorded(record, grace_s=0.5) == [f"stubborn (pid {stubborn.pid})"]
        assert stubborn.wait(5) == -signal.SIGKILL
        assert stranger.poll() is None
        assert not record.exists()
    finally:
        stranger.kill()
        stranger.wait()
        stubborn.stdout.close()


def test_forget_keeps_the_record_while_a_child_runs(tmp_path: Path) -> None:
    children = Children(tmp_path / "children")
    with open(tmp_path / "log", "ab") as log:
        child = children.popen(["sleep", "600"], log, "sleeper")
    children.forget()
    assert children.record.exists()
    child.terminate()
    child.wait()
    children.forget()
    assert not children.record.exists()
