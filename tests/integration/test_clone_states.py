"""What a repo's path holds while a real ``git clone`` is still running, as the setup pusher
(``checkout_state``: git's ``rev-parse`` and the index) and the daemon's runtime
(``daemon.gitclone --check``, dulwich) read it.

The clone is held by a FIFO the test opens when it is done looking: in its fetch (its
upload-pack waits on it) or in its checkout (a smudge filter waits on it). That is the state a
setup pusher killed mid-clone leaves behind while the machine's clone goes on.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import cast

from contracts.daemon.rpc import EXIT_CLONE_UNFINISHED, ExecCommandResult, HealthResult
from contracts.models import Repo
from controlplane.calls.daemon_client import MachineClient
from daemon.gitclone import checkout_state as runtime_state
from services.setup_pusher.checkouts import CheckoutState, checkout_state
from tests.conftest import make_bare_repo
from tests.gitcmd import git, repo_with
from tests.waiters import wait_until

PATH = "dst"


class HostMachine:
    """What ``checkout_state`` asks of a machine, answered on this host in ``home``: git run
    there, files looked at there."""

    def __init__(self, home: Path) -> None:
        self.home = home

    async def run(self, *argv: str, timeout_s: float = 120.0) -> ExecCommandResult:
        done = await asyncio.to_thread(subprocess.run, argv, cwd=self.home, capture_output=True,
                                       text=True, timeout=timeout_s, check=False)  # fmt: skip
        return ExecCommandResult(exit_code=done.returncode, stdout=done.stdout,
                                 stderr=done.stderr)  # fmt: skip

    async def health(self, *, files: list[str], timeout_s: float | None = None) -> HealthResult:
        missing = [f for f in files if not (self.home / f).is_file()]
        return HealthResult(ok=True, uptime_s=0.0, missing=missing)


async def pusher_state(home: Path, url: str) -> CheckoutState:
    machine = cast(MachineClient, HostMachine(home))
    return await checkout_state(machine, Repo(url=url, branch="main", path=PATH), 30.0)


def check_command(path: Path, url: str) -> subprocess.CompletedProcess[str]:
    """``tool.gitClone``'s check, as the daemon runs it."""
    return subprocess.run([sys.executable, "-m", "daemon.gitclone", url, "main", str(path),
                           "--check"], capture_output=True, text=True, check=False)  # fmt: skip


def head_resolves(path: Path) -> bool:
    return subprocess.run(["git", "-C", str(path), "rev-parse", "--verify", "-q", "HEAD"],
                          capture_output=True, check=False).returncode == 0  # fmt: skip


def release(fifo: Path) -> bool:
    """Let the clone go on, once its waiter has the FIFO open (False until then)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no reader yet
            return False
        raise
    os.write(fd, b"go\n")
    os.close(fd)
    return True


@asynccontextmanager
async def held_clone(
    home: Path, url: str, *options: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``git clone`` of ``url`` into ``home/dst`` with clone's ``options``, in a session of its
    own: killed whole if the test ends before the clone does."""
    proc = await asyncio.create_subprocess_exec(
        "git", "clone", *options, "-q", "--branch", "main", "--single-branch", "--", url,
        str(home / PATH), start_new_session=True,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.returncode is None:
            with suppress(ProcessLookupError):  # git, and the shell still waiting on the FIFO
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


async def test_a_clone_held_in_its_fetch_is_unfinished_until_it_ends(tmp_path: Path) -> None:
    url, fifo = f"file://{make_bare_repo(tmp_path)}", tmp_path / "go"
    os.mkfifo(fifo)
    upload_pack = f"cat {fifo} >/dev/null; git-upload-pack"
    async with held_clone(tmp_path, url, "--upload-pack", upload_pack) as proc:
        config = tmp_path / PATH / ".git" / "config"
        await wait_until(lambda: config.is_file() and url in config.read_text(), timeout=30)
        assert not head_resolves(tmp_path / PATH)
        assert await pusher_state(tmp_path, url) == "unfinished"
        assert runtime_state(tmp_path / PATH, url) == (EXIT_CLONE_UNFINISHED, "")
        assert check_command(tmp_path / PATH, url).returncode == EXIT_CLONE_UNFINISHED
        assert await pusher_state(tmp_path, "file:///elsewhere.git") == "none"

        await wait_until(lambda: release(fifo), timeout=30)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert await pusher_state(tmp_path, url) == "finished"
    check = check_command(tmp_path / PATH, url)
    assert (check.returncode, check.stdout) == (0, "main\n")


async def test_a_clone_held_in_its_checkout_is_unfinished_though_head_resolves(
    tmp_path: Path,
) -> None:
    """git points HEAD at the fetched commit before it writes the work tree and, last, the
    index: a clone in its checkout is unfinished too."""
    work = repo_with(tmp_path, {"README": "main\n", ".gitattributes": "README filter=hold\n"})
    bare = tmp_path / "held.git"
    git("clone", "-q", "--bare", str(work), str(bare))
    url, fifo = f"file://{bare}", tmp_path / "go"
    os.mkfifo(fifo)
    smudge = (
        "-c",
        f"filter.hold.smudge=cat {fifo} >/dev/null; cat",
        "-c",
        "filter.hold.required=true",
    )
    async with held_clone(tmp_path, url, *smudge) as proc:
        await wait_until(lambda: head_resolves(tmp_path / PATH), timeout=30)
        assert not (tmp_path / PATH / ".git" / "index").exists()
        assert await pusher_state(tmp_path, url) == "unfinished"
        assert runtime_state(tmp_path / PATH, url) == (EXIT_CLONE_UNFINISHED, "")

        await wait_until(lambda: release(fifo), timeout=30)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    assert await pusher_state(tmp_path, url) == "finished"
    assert runtime_state(tmp_path / PATH, url) == (0, "main")


async def test_an_orphan_branch_a_parents_repository_or_nothing_is_no_checkout(
    tmp_path: Path,
) -> None:
    url = f"file://{make_bare_repo(tmp_path)}"
    assert await pusher_state(tmp_path, url) == "none"  # nothing there
    assert runtime_state(tmp_path / PATH, url) == (1, "")
    git("clone", "-q", url, str(tmp_path / "outer"))
    (tmp_path / "outer" / PATH).mkdir()
    assert await pusher_state(tmp_path / "outer", url) == "none"  # the parent's .git
    assert runtime_state(tmp_path / "outer" / PATH, url) == (1, "")

    git("clone", "-q", url, str(tmp_path / PATH))
    assert await pusher_state(tmp_path, url) == "finished"
    git("checkout", "-q", "--orphan", "scratch", cwd=tmp_path / PATH)  # a user's new history
    assert await pusher_state(tmp_path, url) == "none"  # an index, no HEAD: not a clone
    assert runtime_state(tmp_path / PATH, url) == (1, "")
