"""A local machine's supervision from outside: its daemon restarted in place (SIGHUP to its
supervisor), its processes stopped (SIGTERM, SIGKILL after a grace time, until none is left),
every local machine of a data dir stopped at once, and each end recorded (``daemon.exits``);
``Children``, the roots this process started, reaped.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import time
from pathlib import Path

import structlog

from base import procinfo
from base.wait import wait_until
from providers import gvisor
from providers.local.processes import machine_roots, markers, owners, pid_alive, running_pid
from providers.sandbox import (
    MachineCgroup,
    sandbox_root_children,
    stop_pasta,
    supervisor_pid,
    unmount_overlay,
)

log = structlog.get_logger(__name__)


def _supervisor_of(root: int) -> int | None:
    """The supervisor's host pid: the root itself, or inside bwrap two levels down. None when
    a sandbox's supervisor has already ended (the machine is going: bwrap follows it, and a
    signal to bwrap itself would only turn its clean exit into a SIGTERM)."""
    if "bwrap" in Path(f"/proc/{root}/comm").read_text(errors="replace"):
        return supervisor_pid(root)
    return root


def restart_local(machine_dir: Path, machine_id: str) -> bool:
    """SIGHUP to the supervisor: it restarts the daemon, which leaves its processes running."""
    pid = running_pid(machine_dir, machine_id)
    if pid is None:
        return False
    supervisor = _supervisor_of(pid)
    if supervisor is None:  # the machine is ending: nothing to restart
        return False
    with contextlib.suppress(OSError):
        os.kill(supervisor, signal.SIGHUP)
        return True
    return False


#: How long a stopped daemon gets before it is SIGKILLed: more than its own stop may take
#: (up to 10 s for the calls in flight, then 5 s for its processes' SIGTERM grace), so only a
#: stuck daemon is killed; one that stops cleanly takes a fraction of a second.
STOP_GRACE_S = 20.0


def stop_local(
    machine_dir: Path, machine_id: str, grace_s: float = STOP_GRACE_S, killed_as: str = "SIGKILL"
) -> bool:
    """SIGTERM the daemon's process group, SIGKILL it after ``grace_s`` (recorded as
    ``killed_as``); then any other root started for this machine (a start whose pid was never
    recorded). True if one was up."""
    pid = running_pid(machine_dir, machine_id)
    if pid is not None:
        # The others before the kill: a dying sandbox's init, its bwrap gone, would look like
        # a root of its own.
        others = [root for root in machine_roots(machine_dir, machine_id) if root != pid]
        with _sandbox_namespaces((pid, *others)) as namespaces:
            for root in (pid, *others):
                _stop_root(machine_dir, machine_id, root, grace_s, killed_as)
            _await_every_process(machine_id, markers(machine_dir, machine_id), namespaces)
    # Its cgroup too, if it had one (also when it had ended on its own: an archive's stop);
    # a machine from the warm pool kept its slot's.
    named = owners(machine_dir, machine_id)
    for owner in named:
        MachineCgroup(owner).remove()
    stop_pasta(*named)  # its network's way out (the namespace ended with the sandbox)
    return pid is not None


def _sandbox_namespaces(roots: tuple[int, ...]) -> contextlib.AbstractContextManager[set[int]]:
    """The pid namespaces of these roots' sandboxes (bwrap's child is the namespace's init),
    held while the stop waits for their processes: none for a root without a sandbox, whose
    children share the host's."""
    return procinfo.held_pid_namespaces(
        (root, child) for root in roots for child in sandbox_root_children(root)
    )


#: How long a stop waits, after the roots ended, for the rest of the machine's processes: the
#: kernel ends those of a sandbox's namespace after bwrap has reported its end (for a moment,
#: one may be in D state); only a process stuck in the kernel takes longer.
EXIT_WAIT_S = 10.0


def _await_every_process(
    machine_id: str, markers: list[tuple[str, str]], namespaces: set[int]
) -> None:
    """Returns once no process of the machine is left (SIGKILLed, were any to outlive the
    kill of its roots): a stopped machine runs nothing, not "nothing soon"."""
    left: list[int] = []

    def gone() -> bool:
        left[:] = procinfo.members(markers, namespaces)
        for p in left:
            with contextlib.suppress(OSError):
                os.kill(p, signal.SIGKILL)
        return not left

    if not wait_until(gone, within_s=EXIT_WAIT_S, every_s=0.02):
        log.error("provider.local_processes_left", machine_id=machine_id, pids=left)


def _stop_root(
    machine_dir: Path, machine_id: str, pid: int, grace_s: float, killed_as: str
) -> None:
    start = time.monotonic()
    supervisor = None
    with contextlib.suppress(OSError):  # the supervisor stops the daemon, then itself
        if (supervisor := _supervisor_of(pid)) is not None:
            os.kill(supervisor, signal.SIGTERM)
    # No supervisor: the sandbox is ending, or it never got one (its provisioner died between
    # bwrap's start and the network's hand-over, and bwrap waits on a pipe nobody writes): a
    # short wait, then the kill ends no daemon, and is recorded as such.
    grace = grace_s if supervisor is not None else min(grace_s, 1.0)
    wait_until(lambda: not pid_alive(pid), within_s=start + grace - time.monotonic(),
               every_s=0.05)  # fmt: skip
    killed = pid_alive(pid)
    # The whole group: bwrap, its init (whose end ends every process of the machine's pid
    # namespace, setsid or not), the supervisor and the daemon.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # and whatever is left of its process group
    took_s = round(time.monotonic() - start, 3)
    how = "SIGTERM" if not killed else killed_as if supervisor is not None else NO_DAEMON
    if killed and killed_as != "SIGKILL":  # the caller knows better why it had to be killed
        how = killed_as
    record_exit(machine_dir, pid, endedBy=how, tookS=took_s)
    log.info("provider.local_stopped", machine_id=machine_id, pid=pid, sigkilled=killed)


NO_DAEMON = "SIGKILL-no-daemon"


CUT_OFF = "SIGKILL-cut-off"


NEVER_IDENTIFIED = "SIGKILL-never-identified"


#: One JSON line per daemon this provider saw end: ``code``, its exit code, for the daemons it
#: started and reaped (-9: SIGKILLed); ``endedBy`` for those it stopped (``SIGTERM``: it ended in
#: its grace time; ``SIGKILL``: it had to be killed; ``SIGKILL-no-daemon``: a sandbox that never
#: got its supervisor, so no daemon was killed; ``SIGKILL-cut-off``: a sandbox whose provisioner
#: died before giving it its network, so its daemon never served; ``SIGKILL-never-identified``:
#: a pooled sandbox whose claimer died before telling it which machine it is), with ``tookS``.
EXITS_FILE = "daemon.exits"


def record_exit(machine_dir: Path, pid: int, **what: object) -> None:
    line = json.dumps({"pid": pid, **what, "at": time.time()})
    with contextlib.suppress(OSError), (machine_dir / EXITS_FILE).open("a") as out:
        out.write(line + "\n")


def exit_records(data_dir: Path) -> list[dict[str, object]]:
    """Every exit record under ``data_dir`` (each with its ``machineId``)."""
    root = data_dir.resolve() / "machines"
    found: list[dict[str, object]] = []
    for path in sorted(root.glob(f"*/{EXITS_FILE}")) if root.is_dir() else []:
        for line in path.read_text().splitlines():
            found.append({**json.loads(line), "machineId": path.parent.name})
    return found


#: How many gvisor machines `stop_all_local` stops at a time.
_STOP_THREADS = 16


def stop_all_local(data_dir: Path, grace_s: float = STOP_GRACE_S) -> int:
    """Stop every local machine under ``data_dir``; returns how many were running. All are
    sent SIGTERM first, then waited for on one shared deadline: n machines take about as long
    as the slowest, not the sum of their grace times, so a loaded host can give each more."""
    root = data_dir.resolve() / "machines"
    if not root.is_dir():
        return 0
    dirs = [d for d in root.iterdir() if d.is_dir()]
    runsc = gvisor.Runsc("runsc", "ptrace", data_dir.resolve())
    on_gvisor = [d for d in dirs if gvisor.is_gvisor(d)]
    dirs = [d for d in dirs if d not in on_gvisor]
    # Together, as the others are: each waits on its own sandbox (up to grace_s when stuck).
    with concurrent.futures.ThreadPoolExecutor(min(len(on_gvisor), _STOP_THREADS) or 1) as pool:
        # With its pool slot's names: a machine from the warm pool runs on its slot's pasta.
        gvisor_up = sum(pool.map(lambda d: gvisor.stop_machine(
            runsc, d, d.name, grace_s, owners=tuple(owners(d, d.name))), on_gvisor))  # fmt: skip
    for d in dirs:
        pid = running_pid(d, d.name)
        with contextlib.suppress(OSError):  # a second SIGTERM from stop_local is harmless
            if pid is not None and (supervisor := _supervisor_of(pid)) is not None:
                os.kill(supervisor, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    ended = sum(stop_local(d, d.name, grace_s=max(0.0, deadline - time.monotonic())) for d in dirs)
    for d in dirs:  # an image machine's overlay: mounted again at its next start
        unmount_overlay(d)
    return ended + gvisor_up


class Children:
    """The machines' roots this process started (or adopted from its pool), reaped as they
    end, each end recorded in its machine's directory."""

    def __init__(self, machines: Path) -> None:
        self._machines = machines
        self._pids: dict[str, int] = {}

    def adopt(self, machine_id: str, pid: int) -> None:
        self._pids[machine_id] = pid

    def forget(self, machine_id: str, pid: int) -> None:
        """The machine's root no longer ours to reap; ``pid`` (ended, its end recorded by
        whoever ended it) waited for, if it was that root."""
        if self._pids.pop(machine_id, None) == pid:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

    def reap(self) -> None:
        """Collect exit statuses of daemons this process started (no zombies)."""
        for mid, pid in list(self._pids.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                code = os.waitstatus_to_exitcode(status)  # -9: SIGKILLed
                log.info("provider.local_exited", machine_id=mid, pid=pid, code=code)
                record_exit(self._machines / mid, pid, code=code)
                del self._pids[mid]
