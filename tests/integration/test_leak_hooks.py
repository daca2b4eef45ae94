"""tests/leak_hooks.py: what a failed test leaks fails that test's teardown, and the tests after
it on the same worker pass. A real pytest session in a process of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]

SESSION = """
import asyncio, gc, socket


async def test_a_leaks_a_connection_and_fails():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    reader, writer = await asyncio.open_connection(*listener.getsockname())
    assert False, "before its closes"


async def test_b_comes_next():
    gc.collect()


def test_c_comes_last():
    gc.collect()
"""


def run_session(tmp_path: Path, *plugins: str) -> str:
    test = tmp_path / "test_session.py"
    test.write_text(SESSION)
    argv = [sys.executable, "-m", "pytest", str(test), "-q", "-p", "no:cacheprovider",
            "-p", "no:randomly", "-c", str(CHECKOUT / "pyproject.toml"), "-n", "0",
            "--rootdir", str(tmp_path), "--basetemp", str(tmp_path / "basetemp"),
            "-rfE", *plugins]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "FLEET_"))}
    done = subprocess.run(
        argv, cwd=CHECKOUT, env=env, capture_output=True, text=True, timeout=90, check=False
    )
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    return done.stdout


def test_a_failed_tests_leak_fails_its_own_teardown(tmp_path: Path) -> None:
    out = run_session(tmp_path, "-p", "tests.leak_hooks")
    assert "1 failed, 2 passed, 1 error" in out, out
    assert "ERROR at teardown of test_a_leaks_a_connection_and_fails" in out, out
    assert "ResourceWarning" in out, out


def test_without_the_hooks_the_next_test_fails_for_it(tmp_path: Path) -> None:
    """What the hooks are for: the same session fails an innocent test."""
    out = run_session(tmp_path)
    assert "test_session.py::test_b_comes_next" in out.split("short test summary")[1], out
    assert "2 failed, 1 passed" in out, out
