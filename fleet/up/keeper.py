"""The keeper: a stack's machines end with its `fleet up`, however that ends (SIGKILL included).

Machines are started detached, each in a cgroup of its own, so that they outlive a provisioner
that dies and comes back (it finds them running). What must not outlive them is the stack: a
`fleet up` killed outright left its machines, their pastas and runsc sandboxes running, and
nothing ended them once its data dir was removed.

`fleet up` starts one keeper (``python -m fleet.up.keeper``) through base.lifeline, whose
``PR_SET_PDEATHSIG`` has the kernel send it SIGTERM when `fleet up` ends, however it ends. Its
only job is then to do what `fleet up`'s own stop does to the machines (``stop_machines``:
local, gvisor and docker machines, swarm hosts, the homes' mount) and end what still names the
stack (fleet.up.gc, this stack alone: pool slots' pastas and sandboxes of a provisioner killed
with it). It does nothing else: a restarted service or provisioner never reaches it. A normal
stop stops the machines itself, then stands the keeper down (``STAND_DOWN``), and it exits
without touching anything. Its record (``RECORD``, as base.lifeline's) has the next `fleet up`
on the data dir wait for a keeper still stopping the dead one's machines before it starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from base import lifeline
from base.lifeline import Children, end_recorded

if TYPE_CHECKING:  # imported when it acts: an idle keeper holds little more than Python
    from controlplane.settings import Settings

#: In the data dir: the running keeper (base.lifeline's record).
RECORD = "fleet-up.keeper"
#: From `fleet up`'s normal stop: the machines are stopped, exit touching nothing.
STAND_DOWN = signal.SIGUSR1
#: A keeper of a dead `fleet up` is given this long to finish its stop (its machines' grace).
FINISH_S = 60.0
_SIGNALS = {signal.SIGTERM, signal.SIGHUP, STAND_DOWN}


class Keeper:
    """The keeper of the stack whose machines live in ``data_dirs`` (the first: the stack's)."""

    def __init__(self, data_dirs: list[Path], env: dict[str, str]) -> None:
        self._children = Children(data_dirs[0] / RECORD)
        self._argv = [sys.executable, "-m", "fleet.up.keeper", str(os.getpid()),
                      *map(str, data_dirs)]  # fmt: skip
        self._env, self._log = env, data_dirs[0] / "logs" / "keeper.log"
        self.proc = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        with open(self._log, "ab") as log:
            return self._children.popen(self._argv, log, "keeper", self._env, signal.SIGTERM,
                                        held=True)  # fmt: skip

    def check(self) -> list[str]:
        """Started again if it ended (killed by someone): the tie holds while `fleet up` runs."""
        if (code := self.proc.poll()) is None:
            return []
        self.proc = self._start()
        return [f"restarted the keeper (it exited with {code})"]

    def stand_down(self) -> None:
        """The machines are stopped: the keeper exits without touching anything."""
        if self.proc.poll() is None:
            self.proc.send_signal(STAND_DOWN)
            try:
                self.proc.wait(timeout=FINISH_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._children.forget()


def finish_left(data_dir: Path) -> list[str]:
    """A dead `fleet up`'s keeper still stopping its machines, given ``FINISH_S`` to finish,
    then ended; "keeper (pid N)" if there was one."""
    return end_recorded(data_dir / RECORD, grace_s=FINISH_S)


def stop_machines(settings: Settings, data_dirs: list[Path]) -> None:
    """Stop the stack's machines (`fleet up`'s stop, and the keeper's), saying how many."""
    # Here, not at the top: an idle keeper holds little more than Python.
    import asyncio

    from fleet.up import gc
    from fleet.up.docker_setup import stop_docker_machines
    from providers.local import homes as homes_fs, stop_all_local
    from providers.swarm import stop_all_swarm

    n = sum(stop_all_local(d) for d in data_dirs)
    if n:
        print(f"fleet up: stopped {n} local machine(s)", flush=True)
    # A host without a Docker engine is the common case: its absence only matters (and is only
    # reported) when this stack makes docker machines.
    docker_used = settings.default_provider == "docker" or any(
        n for name, n in settings.warm_pool_sizes.items() if name.partition("@")[0] == "docker"
    )
    if containers := asyncio.run(stop_docker_machines(settings, expected=docker_used)):
        print(f"fleet up: stopped {containers} docker machine(s)", flush=True)
    hosts = sum(stop_all_swarm(d) for d in data_dirs)
    if hosts:
        print(f"fleet up: stopped {hosts} swarm host(s)", flush=True)
    for d in data_dirs:  # the homes' image, if fleetd mounted one (providers/local/homes.py)
        homes_fs.unmount(d)
    # A gvisor machine from the warm pool runs on its slot's pasta, which the machines' stop
    # (stop_all_local, by machine id) does not find: ended here, by the stack's mark.
    if pastas := gc.pastas_of(data_dirs[0].resolve()):
        lifeline.end([(p.pid, p.ticks) for p in pastas])
        print(f"fleet up: ended {len(pastas)} pasta(s) its machines left", flush=True)


def main(argv: list[str]) -> int:
    """``python -m fleet.up.keeper UP_PID DATA_DIR...``: waits for `fleet up`'s end."""
    up_pid, data_dirs = int(argv[0]), [Path(a) for a in argv[1:]]
    # SIGTERM came blocked (base.lifeline's ``held``): one sent while Python started waits.
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    # `fleet up` gone before its signal was set up (the wrapper's prctl): none will come.
    ended = signal.SIGTERM if os.getppid() != up_pid else signal.sigwait(_SIGNALS)
    if ended == STAND_DOWN:
        return 0
    print(f"keeper: fleet up (pid {up_pid}) ended; stopping its machines", flush=True)
    from controlplane.settings import Settings

    try:
        stop_machines(Settings.from_env(), data_dirs)
    except Exception as exc:  # noqa: BLE001 - what names the stack is still ended below
        print(f"keeper: stopping the machines failed: {exc!r}", flush=True)
    from fleet.up import gc  # the rest of what names the stack (never another stack's)

    left = gc.find(only=gc.top(data_dirs[0]))
    for line in left.lines():
        print(f"keeper: ending {line}", flush=True)
    for line in gc.remove(left):
        print(f"keeper: could not remove {line}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
