"""The end-of-session check counts a helper of fleetd's that names no dir of the session (a pasta
of a provider run inside a test process carries no data dir) when it was orphaned to the
session's reaper (tests/reaper.py), and names the test that ran when it started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from base import procinfo
from tests.integration.test_leftovers import CHECKOUT

SESSION = """
import subprocess
from pathlib import Path


def test_leaves_an_orphaned_pasta() -> None:
    # As pasta leaves itself: its first half exits, the second runs on, orphaned.
    script = "(exec -a pasta sleep 600 </dev/null >/dev/null 2>&1) & echo $!"
    out = subprocess.run(["bash", "-c", script], cwd="/",
                         env={"PATH": "/usr/bin:/bin", "FLEET_NETNS_OF": "m-1"},
                         capture_output=True, text=True, check=True).stdout
    (Path(__file__).parent / "orphan.pid").write_text(out.strip())
"""


@pytest.mark.timeout(200)
def test_a_helper_orphaned_to_the_session_s_reaper_fails_it_named(tmp_path: Path) -> None:
    test = tmp_path / "test_session.py"
    test.write_text(SESSION)
    argv = [sys.executable, "-m", "tests.reaper", sys.executable, "-m", "pytest", str(test),
            "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
            "-c", str(CHECKOUT / "pyproject.toml"), "-n", "0", "--rootdir", str(tmp_path),
            "--basetemp", str(tmp_path / "basetemp"), "--leftovers-settle-s=1"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "FLEET_"))}
    done = subprocess.run(argv, cwd=CHECKOUT, env=env, capture_output=True, text=True,
                          timeout=90, check=False)  # fmt: skip
    pid = int((tmp_path / "orphan.pid").read_text())
    try:
        out = done.stdout + done.stderr
        assert done.returncode == pytest.ExitCode.TESTS_FAILED, out
        assert f"process {pid}: pasta 600" in out, out
        assert "(started during test_session.py::test_leaves_an_orphaned_pasta)" in out, out
    finally:
        if procinfo.is_alive(pid, None):
            os.kill(pid, signal.SIGKILL)
