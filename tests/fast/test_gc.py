"""`fleet gc`'s selection (fleet/up/gc.py): a gone stack's things are chosen, a live stack's never,
nor a process that is not fleetd's, nor a stack whose owner it cannot know."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from base import procinfo
from fleet.up import gc


def hold(data: Path, pid: int) -> None:
    """``data``'s `fleet up` lock, as ``pid`` holds (or held) it."""
    data.mkdir(parents=True, exist_ok=True)
    (data / gc.LOCK_NAME).write_text(f"{pid} {procinfo.start_ticks(pid) or 1}\n")


def dead_pid() -> int:
    """The pid of a process that has ended (a `fleet up` killed outright)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_stack_is_gone_when_its_dir_is_or_its_up_is_dead(tmp_path: Path) -> None:
    assert gc.gone(tmp_path / "removed")
    hold(tmp_path / "killed", dead_pid())
    assert gc.gone(tmp_path / "killed")


def test_a_running_up_s_stack_and_one_without_a_lock_are_not_gone(tmp_path: Path) -> None:
    hold(tmp_path / "live", os.getpid())
    assert not gc.gone(tmp_path / "live")
    (tmp_path / "no-lock").mkdir()  # a stopped `fleet up`'s, or a provisioner run by itself
    assert not gc.gone(tmp_path / "no-lock")


@pytest.mark.parametrize(
    ("cmdline", "environ", "cwd", "stack"),
    [
        (b"pasta\0--netns\0/proc/self/fd/23", b"PATH=/bin\0FLEET_DATA_DIR=/s/d\0", b"/", "/s/d"),
        (b"python\0-m\0services.provisioner", b"FLEET_DATA_DIR=/s/d/hosts/host-1\0", b"", "/s/d"),
        (b"bwrap\0--bind\0/s/d/machines/m-1/home\0/home/fleet", b"", b"/", "/s/d"),
        (b"bwrap\0--bind\0/s/d/pool/local/1-2-ab/p3/home\0/home", b"", b"/", "/s/d"),
        (b"runsc-gofer\0--root\0/s/d/hosts/h/runsc\0gofer", b"", b"/", "/s/d"),
        (b"python\0-m\0daemon.supervise", b"HOME=/home/fleet\0", b"/s/d/machines/m-1/home", "/s/d"),
        (b"pasta\0--netns\0/proc/self/fd/23", b"PATH=/bin\0FLEET_NETNS_OF=m-1\0", b"/", None),
        (b"sleep\0600", b"FLEET_DATA_DIR=relative\0", b"/tmp", None),
    ],
)
def test_the_stack_a_process_names(
    cmdline: bytes, environ: bytes, cwd: bytes, stack: str | None
) -> None:
    assert gc.stack_of(cmdline, environ, cwd) == (None if stack is None else Path(stack))


@pytest.mark.parametrize(
    ("argv", "fleetd"),
    [
        (["/usr/bin/pasta", "--quiet"], True),
        (["/usr/bin/bwrap", "--unshare-pid"], True),
        (["runsc-sandbox", "--root=/x"], True),
        (["/usr/bin/nats-server", "-c", "x"], True),
        (["/v/bin/python", "-m", "services.provisioner"], True),
        (["/run/fleet/ld.so", "/v/bin/python", "-I", "-m", "daemon"], True),
        (["tail", "-f", "/s/d/logs/provisioner.log"], False),  # a user's, in the data dir
        (["/v/bin/python", "-m", "http.server"], False),
        (["bash"], False),
        ([], False),
    ],
)
def test_only_fleetd_s_processes_are_ever_chosen(argv: list[str], fleetd: bool) -> None:
    assert gc.is_fleetd(argv) is fleetd


@pytest.fixture
def fake_bwrap(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """A process that runs as "bwrap" with a machine's home of ``<tmp>/data`` in its argv."""
    data = tmp_path / "data"
    home = data / "machines" / "m-1" / "home"
    home.mkdir(parents=True)
    code = "import time; time.sleep(600)"
    argv = ["bwrap", "-c", code, "--bind", str(home), "/home/fleet"]
    proc = subprocess.Popen(argv, executable=sys.executable)
    yield data, proc
    proc.kill()
    proc.wait()


def test_a_live_stack_s_processes_are_never_chosen(
    fake_bwrap: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    data, proc = fake_bwrap
    hold(data, os.getpid())
    assert proc.pid not in [p.pid for p in gc.find().processes]
    assert gc.find(only=data).lines() == []


def test_a_gone_stack_s_processes_are_chosen_and_ended(
    fake_bwrap: tuple[Path, subprocess.Popen[bytes]],
) -> None:
    data, proc = fake_bwrap
    hold(data, dead_pid())
    found = gc.find(only=data)
    assert [p.pid for p in found.processes] == [proc.pid]
    assert gc.remove(found, grace_s=5) == []
    assert proc.wait(timeout=10) == -signal.SIGTERM
