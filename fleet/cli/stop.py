"""`fleet machines stop|start|pause|resume`, `fleet instances autostop` and `fleet instances
runtime`: stopping, starting, pausing and resuming machines, and the runtime of the next ones.

``ensure_started`` is what a command that needs a running machine (a shell, a port forward)
calls first: a stopped machine is started, and the command says so and waits.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from contracts.models import Machine
from contracts.status import (
    PAUSE_ENDS,
    START_ENDS,
    STOP_ENDS,
    STOPPED_OR_STOPPING,
    MachineStatus,
)
from fleet.cli.common import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, SubAction, command, emit, to_json
from fleet.cli.render import machine_line

if TYPE_CHECKING:
    from fleet.client import FleetClient

Args = argparse.Namespace


def machine_commands(g: SubAction) -> None:
    stop = command(g, "stop", _stop, "stop a machine: its processes end, its home stays; "
                   "waits until every process of it has exited")  # fmt: skip
    stop.add_argument("machine_id")
    stop.add_argument("--timeout", type=float, default=120.0, help="seconds to wait")
    start = command(g, "start", _start, "start a stopped machine again (the same machine); a "
                    "failed one too, once what is left of it is ended")  # fmt: skip
    start.add_argument("machine_id")
    start.add_argument("--wait", action="store_true", help="wait until it is ready")
    start.add_argument("--timeout", type=float, default=300.0, help="seconds, for --wait")
    pause = command(g, "pause", _pause, "pause a gvisor machine with its memory and processes; "
                    "waits until it is paused")  # fmt: skip
    pause.add_argument("machine_id")
    pause.add_argument("--timeout", type=float, default=300.0, help="seconds to wait")
    resume = command(g, "resume", _resume, "resume a paused machine where it was")
    resume.add_argument("machine_id")
    resume.add_argument("--timeout", type=float, default=300.0, help="seconds to wait")


def instance_commands(g: SubAction) -> None:
    auto = command(g, "autostop", _autostop, "show or set when its idle machines pause or stop")
    auto.add_argument("instance_id")
    auto.add_argument("idle_after_s", nargs="?", type=int,
                      help="seconds without activity (exec, terminal, files, ports, codemode) "
                      "before its machines pause or stop; 0: never")  # fmt: skip
    auto.add_argument("--action", choices=["pause", "stop"],
                      help="default: pause a gvisor machine, stop a namespaces one (which is "
                      "always stopped)")  # fmt: skip
    rt = command(g, "runtime", _runtime, "show or set the runtime of its next machines")
    rt.add_argument("instance_id")
    rt.add_argument("runtime", nargs="?", choices=["namespaces", "gvisor", "default"],
                    help="default: the platform's (FLEET_RUNTIME)")  # fmt: skip


async def _stop(c: FleetClient, a: Args) -> int:
    m = await c.stop_machine(a.machine_id)
    if m.status is MachineStatus.STOPPING:
        try:
            m = await c.wait_for(m.id, STOP_ENDS, a.timeout)
        except TimeoutError:
            print(f"fleet: machine {m.id} still stopping after {a.timeout:g}s", file=sys.stderr)
            return EXIT_TIMEOUT
    return emit(a, m, lambda: f"{machine_line(m)}\n(its home is kept: fleet machines start {m.id})")


async def _start(c: FleetClient, a: Args) -> int:
    m = await c.start_machine(a.machine_id)
    if not a.wait:
        return emit(a, m, lambda: machine_line(m))
    return await _until(c, a, m, START_ENDS, "ready")


async def _pause(c: FleetClient, a: Args) -> int:
    return await _until(c, a, await c.pause_machine(a.machine_id), PAUSE_ENDS, "paused")


async def _resume(c: FleetClient, a: Args) -> int:
    return await _until(c, a, await c.resume_machine(a.machine_id), START_ENDS, "ready")


async def _until(
    c: FleetClient, a: Args, m: Machine, done: frozenset[MachineStatus], want: str
) -> int:
    try:
        m = await c.wait_for(m.id, done, a.timeout)
    except TimeoutError:
        print(f"fleet: machine {m.id} not {want} after {a.timeout:g}s", file=sys.stderr)
        return EXIT_TIMEOUT
    print(to_json(m) if a.json else machine_line(m))
    return EXIT_OK if m.status.value == want else EXIT_FAILED


async def _autostop(c: FleetClient, a: Args) -> int:
    if a.idle_after_s is None:
        got = await c.get_autostop(a.instance_id)
    else:
        got = await c.set_autostop(a.instance_id, a.idle_after_s, a.action)
    does = {"pause": "pause (gvisor; namespaces ones stop)", "stop": "stop",
            None: "pause (gvisor) or stop (namespaces)"}[got.action]  # fmt: skip
    what = (f"idle machines {does} after {got.idle_after_s} s" if got.idle_after_s
            else "auto-stop is off")  # fmt: skip
    return emit(a, got, lambda: f"{got.instance_id}: {what}")


async def _runtime(c: FleetClient, a: Args) -> int:
    if a.runtime is None:
        got = await c.get_runtime(a.instance_id)
    else:
        got = await c.set_runtime(a.instance_id, None if a.runtime == "default" else a.runtime)
    own = got.runtime or "the platform's"
    return emit(a, got, lambda: f"{got.instance_id}: runtime {own} (its next machine: "
                f"{got.effective})")  # fmt: skip


async def ensure_started(c: FleetClient, machine_id: str, timeout_s: float = 300.0) -> Machine:
    """The machine, started first (saying so on stderr, and waiting) if it is stopped (or
    stopping)."""
    m = await c.get_machine(machine_id)
    if m.status not in STOPPED_OR_STOPPING:
        return m
    print(f"fleet: machine {machine_id} is {m.status.value}; starting it ...", file=sys.stderr,
          flush=True)  # fmt: skip
    await c.start_machine(machine_id)
    m = await c.wait_for(machine_id, START_ENDS, timeout_s)
    print(f"fleet: machine {machine_id} is {m.status.value}", file=sys.stderr, flush=True)
    return m
