"""The end-of-session check (tests/leftovers.py, tests/conftest.py's pytest_sessionfinish):
a session whose fixture leaks a process fails, naming it; the same session without the leak
passes. Each is a real pytest session in a process of its own, with this suite's conftest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from base import procinfo
from providers.docker import LABEL_STACK
from tests import leftovers
from tests.docker_env import docker_image, remove_containers

__all__ = ["docker_image", "remove_containers"]

CHECKOUT = Path(__file__).resolve().parents[2]

SESSION = """
import subprocess
from pathlib import Path

import pytest


@pytest.fixture
def worker(tmp_path: Path):
    proc = subprocess.Popen(["sleep", "600"], cwd=tmp_path, start_new_session=True)
    (Path(__file__).parent / "worker.pid").write_text(str(proc.pid))
    yield proc
    if not LEAK:
        proc.kill()
        proc.wait()


def test_uses_a_worker(worker: subprocess.Popen[bytes]) -> None:
    assert worker.poll() is None
"""


#: How long the session gives what its teardowns signalled to end: its leak never ends, and
#: the clean session's teardown waits for its worker to end.
SETTLE_S = 1.0


def run_session(
    tmp_path: Path, *, leak: bool, workers: str = "0"
) -> tuple[subprocess.CompletedProcess[str], int]:
    """The session, in one process or on xdist ``workers`` (the controller checks, once they
    have ended)."""
    where = tmp_path / ("leaky" if leak else "clean")
    where.mkdir()
    test = where / "test_session.py"
    test.write_text(f"LEAK = {leak}\n" + SESSION)
    argv = [sys.executable, "-m", "pytest", str(test), "-q", "-p", "no:cacheprovider",
            "-p", "tests.conftest", "-c", str(CHECKOUT / "pyproject.toml"), "-n", workers,
            "--rootdir", str(where), "--basetemp", str(where / "basetemp"),
            f"--leftovers-settle-s={SETTLE_S}"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "FLEET_"))}
    done = subprocess.run(
        argv, cwd=CHECKOUT, env=env, capture_output=True, text=True, timeout=90, check=False
    )
    return done, int((where / "worker.pid").read_text())


@pytest.mark.timeout(200)
@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_leaked_process_fails_the_session_and_is_named(tmp_path: Path, workers: str) -> None:
    done, pid = run_session(tmp_path, leak=True, workers=workers)
    try:
        out = done.stdout + done.stderr
        assert done.returncode == pytest.ExitCode.TESTS_FAILED, out
        assert "1 passed" in out, out
        assert "this session left behind (1)" in out, out
        assert f"process {pid}: sleep 600" in out, out
        assert "(started during test_session.py::test_uses_a_worker)" in out, out
    finally:
        if procinfo.is_alive(pid, None):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(200)
def test_the_same_session_without_the_leak_passes(tmp_path: Path) -> None:
    done, pid = run_session(tmp_path, leak=False)
    assert done.returncode == pytest.ExitCode.OK, done.stdout + done.stderr
    assert "left behind" not in done.stdout
    assert not procinfo.is_alive(pid, None)


def test_a_process_of_another_base_temp_dir_is_not_counted(tmp_path: Path) -> None:
    """``pytest-12`` is not ``pytest-123``: a sibling whose name only starts the same."""
    mine, theirs = tmp_path / "pytest-12", tmp_path / "pytest-123"
    mine.mkdir()
    theirs.mkdir()
    proc = subprocess.Popen(["sleep", "600"], cwd=theirs)
    try:
        assert leftovers.processes(mine) == []
        assert leftovers.processes(theirs) == [f"process {proc.pid}: sleep 600"]
    finally:
        proc.kill()
        proc.wait()


def test_a_mount_under_the_base_temp_dir_is_counted(tmp_path: Path) -> None:
    point = tmp_path / "rootfs proc"  # a space: mountinfo escapes it
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "leftover", str(point)], check=True, timeout=30)
    try:
        assert leftovers.mounts(tmp_path) == [f"mount {point}"]
    finally:
        subprocess.run(["umount", str(point)], check=True, timeout=30)
    assert leftovers.mounts(tmp_path) == []


@pytest.mark.usefixtures("remove_containers")
def test_a_container_of_a_stack_under_the_base_temp_dir_is_counted(
    tmp_path: Path, docker_image: tuple[str, str]
) -> None:
    stack = tmp_path / "data"
    created = subprocess.run(
        ["docker", "create", "--label", f"{LABEL_STACK}={stack}", docker_image[1], "true"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    cid = created.stdout.strip()
    found = leftovers.containers(tmp_path)
    assert len(found) == 1, found
    assert found[0].endswith(f"(created): stack {stack}"), found
    assert leftovers.containers(tmp_path / "other") == []
    subprocess.run(["docker", "rm", cid], capture_output=True, timeout=60, check=True)
    assert leftovers.containers(tmp_path) == []
