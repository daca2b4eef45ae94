"""tools.write_file on a real file system: modes under any umask, parents made when missing."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.daemon.rpc import WriteFileParams
from contracts.errors import ToolError
from daemon.processes import tools


@pytest.mark.parametrize("umask", [None, 0o022, 0o077, 0o000])
@pytest.mark.parametrize("mode", [0o600, 0o644, 0o755, 0o777, 0o000])
def test_write_file_gets_exactly_the_mode_asked(
    tmp_path: Path, umask: int | None, mode: int
) -> None:
    old = os.umask(umask if umask is not None else 0o027)
    try:
        result = tools.write_file(tmp_path, WriteFileParams(path="a/b/f", content="x", mode=mode),
                                  umask)  # fmt: skip
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(result.path).st_mode) == mode
    assert Path(result.path) == tmp_path / "a" / "b" / "f"
    assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["f"]  # no temp file left


def test_current_umask_reads_the_process_umask() -> None:
    old = os.umask(0o037)
    try:
        assert tools.current_umask() == 0o037
    finally:
        os.umask(old)


#: One exec as the daemon runs it, in a process where no thread can start (as at the machine's
#: pids limit, when a command fills it before the daemon's next thread). argv: setup, home.
EXEC_WITHOUT_THREADS = """
import asyncio, sys, threading
from pathlib import Path
from contracts.daemon.rpc import ExecCommandParams
from daemon.processes import reaping
from daemon.processes import tools
from daemon.processes.env import ProcessEnv
if sys.argv[1] == "daemon":
    reaping.reap_without_threads()
def refuse(self): raise RuntimeError("can't start new thread")
threading.Thread.start = refuse
home = Path(sys.argv[2])
run = tools.exec_command(home, ExecCommandParams(command=["echo", "ok"]), ProcessEnv(home, {}), 64)
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)  # as asyncio.run does (it would then need a thread to end)
print(loop.run_until_complete(run).stdout, end="")
"""


def test_an_exec_needs_no_thread_to_watch_its_command(tmp_path: Path) -> None:
    """A fork bomb fills the pids limit before Python 3.11's per-child watcher thread starts:
    the daemon's exec must not need that thread (it answered an internal error)."""
    ran = subprocess.run([sys.executable, "-c", EXEC_WITHOUT_THREADS, "daemon", str(tmp_path)],
                         capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert (ran.returncode, ran.stdout) == (0, "ok\n"), ran.stderr
    if sys.version_info < (3, 12):  # the control: Python's own default needs a thread per child
        control = subprocess.run(
            [sys.executable, "-c", EXEC_WITHOUT_THREADS, "default", str(tmp_path)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert "can't start new thread" in control.stderr, control


def test_a_call_without_a_thread_at_the_limit_is_a_named_error() -> None:
    error = tools.at_thread_limit(RuntimeError("can't start new thread"))
    assert isinstance(error, ToolError)
    assert "process limit" in error.message
    assert tools.at_thread_limit(RuntimeError("something else")) is None
