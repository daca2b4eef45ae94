"""What a repo's path holds while a real ``git clone`` is still fetching, as the setup pusher
(git's ``rev-parse``) and the daemon's runtime (``daemon.gitclone --check``, dulwich) read it.

The clone is held mid-fetch by its upload-pack, which waits on a FIFO the test opens: the
same state a setup pusher killed mid-clone leaves behind while the machine's clone goes on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path

import pytest

from contracts.daemon_rpc import EXIT_CLONE_UNFINISHED
from daemon.gitclone import checkout_state
from tests.conftest import make_bare_repo
from tests.gitcmd import git
from tests.waiters import wait_until


def head_of(path: Path) -> subprocess.CompletedProcess[str]:
    """The setup pusher's question, asked of the real git."""
    return subprocess.run(["git", "-C", str(path), "rev-parse", "--git-dir", "--verify", "-q",
                           "HEAD"], capture_output=True, text=True, check=False)  # fmt: skip


def runtime_check(path: Path, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "daemon.gitclone", url, "main", str(path),
                           "--check"], capture_output=True, text=True, check=False)  # fmt: skip


@pytest.fixture
async def held_clone(tmp_path: Path) -> AsyncIterator[tuple[Path, str, Path]]:
    """A ``git clone`` of the suite's bare repo into ``tmp_path/dst``, blocked before its fetch
    until the yielded FIFO is opened for writing; (destination, url, fifo)."""
    url = f"file://{make_bare_repo(tmp_path)}"
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    dst = tmp_path / "dst"
    proc = await asyncio.create_subprocess_exec(
        "git", "clone", "-q", "--upload-pack", f"cat {fifo} >/dev/null; git-upload-pack",
        "--branch", "main", "--single-branch", "--", url, str(dst), start_new_session=True,
    )  # fmt: skip
    try:
        yield dst, url, fifo
    finally:
        with suppress(ProcessLookupError):  # git, and the upload-pack's shell still waiting
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


def origin_written(dst: Path) -> bool:
    return (dst / ".git" / "config").is_file() and "[remote" in (dst / ".git/config").read_text()


async def test_a_clone_in_flight_is_unfinished_to_both_readers_then_finished(
    held_clone: tuple[Path, str, Path],
) -> None:
    dst, url, fifo = held_clone
    await wait_until(lambda: origin_written(dst), timeout=30)

    head = head_of(dst)
    assert (head.returncode, head.stdout) == (1, ".git\n")
    assert git("-C", str(dst), "config", "--get", "remote.origin.url") == url
    assert checkout_state(dst, url) == (EXIT_CLONE_UNFINISHED, "")
    assert runtime_check(dst, url).returncode == EXIT_CLONE_UNFINISHED
    assert checkout_state(dst, "file:///elsewhere.git") == (1, "")  # another repo's clone

    fifo.write_bytes(b"go\n")  # the upload-pack goes on: the clone finishes
    await wait_until(lambda: head_of(dst).returncode == 0, timeout=30)
    assert checkout_state(dst, url) == (0, "main")
    check = runtime_check(dst, url)
    assert (check.returncode, check.stdout) == (0, "main\n")


def test_no_repository_or_a_parents_is_no_checkout(tmp_path: Path) -> None:
    url = f"file://{make_bare_repo(tmp_path)}"
    assert checkout_state(tmp_path / "absent", url) == (1, "")
    git("clone", "-q", url, str(tmp_path / "outer"))
    (tmp_path / "outer" / "inner").mkdir()
    assert checkout_state(tmp_path / "outer" / "inner", url) == (1, "")  # the parent's .git
    assert checkout_state(tmp_path / "outer", url) == (0, "main")
