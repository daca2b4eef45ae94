"""A local machine's stop kills what is left in its sandbox's pid namespace, found by the
namespace's number (base/procinfo.py). The kernel gives a freed namespace's number to the next
namespace made, so a stop that only remembered the number could SIGKILL the processes of
whatever started next on the host (a container's first process, another machine's sandbox);
two failures of the suite fit that (a Docker helper's "cannot start a stopped process", a build
step's "error running hook"). The stop holds its machine's namespaces open while it waits, so
their numbers stay theirs. Without the holding, the first test's new namespaces take the freed
number (3 of 3 runs of it with the descriptor closed at once)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from base import procinfo
from providers.local import pid_alive
from providers.sandbox import sandbox_root_children


def _first_child(pid: int) -> int | None:
    """``pid``'s child once it is in a pid namespace of its own, else None."""
    found = sandbox_root_children(pid)
    if found and procinfo.pid_namespace(found[0]) != procinfo.pid_namespace(pid):
        return found[0]
    return None


@contextmanager
def in_new_pid_namespace() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``unshare --pid --fork sleep``: (unshare, the sleep: its namespace's first process)."""
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "sleep", "600"])
    try:
        deadline = time.monotonic() + 10
        while (child := _first_child(proc.pid)) is None and time.monotonic() < deadline:
            time.sleep(0.01)  # a poll with a deadline: unshare forks at once
        assert child is not None, "unshare made no child in its own namespace"
        yield proc, child
    finally:
        proc.kill()
        proc.wait()


#: Namespaces made while one is held: the kernel gives each new one the smallest free number, so
#: fewer free numbers than this below the held one's would hand it out, were it free.
NEXT = 30


def test_a_held_namespace_keeps_its_number_after_its_last_process() -> None:
    with (
        in_new_pid_namespace() as (first, child),
        procinfo.held_pid_namespaces([(first.pid, child)]) as held,
        contextlib.ExitStack() as others,
    ):
        assert held == {procinfo.pid_namespace(child)}
        os.kill(child, signal.SIGKILL)  # its namespace's last process: unshare reaps it
        first.wait(timeout=30)
        assert not pid_alive(child)
        innocents = [others.enter_context(in_new_pid_namespace())[1] for _ in range(NEXT)]
        assert not {procinfo.pid_namespace(p) for p in innocents} & held
        assert procinfo.members([], held) == []  # a kill "of that namespace" kills nothing
        assert all(pid_alive(p) for p in innocents)


def test_a_namespace_whose_process_is_not_the_parents_child_is_not_held() -> None:
    with in_new_pid_namespace() as (first, child):
        with procinfo.held_pid_namespaces([(os.getpid(), child)]) as held:
            assert held == set()
        with procinfo.held_pid_namespaces([(first.pid, os.getpid())]) as held:
            assert held == set()  # its namespace is this process's own
