"""`fleet machines fork|snapshot|snapshots|snapshot-delete|from-snapshot`: forks and snapshots
(docs/fork-snapshots.md)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from contracts.models import Machine
from contracts.status import START_ENDS, MachineStatus
from fleet.cli.common import EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, SubAction, command, emit, to_json
from fleet.cli.render import machine_line, table

if TYPE_CHECKING:
    from fleet.client import FleetClient

Args = argparse.Namespace


def machine_commands(g: SubAction) -> None:
    fork = command(g, "fork", _fork, "new machines with the machine's home as of one instant "
                   "(it keeps running); waits until each is ready")  # fmt: skip
    fork.add_argument("machine_id")
    fork.add_argument("--count", type=int, default=1, help="how many forks (1 to 20)")
    fork.add_argument("--memory", action="store_true", help="the forks' processes go on from "
                      "the machine's memory (gvisor machines)")  # fmt: skip
    fork.add_argument("--timeout", type=float, default=300.0, help="seconds to wait")
    snap = command(g, "snapshot", _snapshot, "a named, read-only state of the machine's home, "
                   "kept until deleted")  # fmt: skip
    snap.add_argument("machine_id")
    snap.add_argument("name")
    snap.add_argument("--memory", action="store_true", help="its processes too: a machine made "
                      "from it starts with them running (gvisor machines)")  # fmt: skip
    listed = command(g, "snapshots", _snapshots, "an instance's snapshots")
    listed.add_argument("instance_id")
    drop = command(g, "snapshot-delete", _drop, "delete a snapshot (machines made from it stay)")
    drop.add_argument("snapshot_id")
    made = command(g, "from-snapshot", _from_snapshot, "one more machine of the instance, "
                   "with a copy of the snapshot's home; waits until it is ready")  # fmt: skip
    made.add_argument("instance_id")
    made.add_argument("snapshot_id")
    made.add_argument("--timeout", type=float, default=300.0, help="seconds to wait")


async def _ready(c: FleetClient, a: Args, machines: list[Machine]) -> int:
    import asyncio  # here: the parser (`fleet --help`) does without it

    try:
        done = await asyncio.gather(*(c.wait_for(m.id, START_ENDS, a.timeout) for m in machines))
    except TimeoutError:
        print(f"fleet: not ready after {a.timeout:g}s", file=sys.stderr)
        return EXIT_TIMEOUT
    print(to_json(done) if a.json else "\n".join(machine_line(m) for m in done))
    return EXIT_OK if all(m.status is MachineStatus.READY for m in done) else EXIT_FAILED


async def _fork(c: FleetClient, a: Args) -> int:
    return await _ready(c, a, await c.fork_machine(a.machine_id, a.count, memory=a.memory))


async def _from_snapshot(c: FleetClient, a: Args) -> int:
    return await _ready(c, a, [await c.create_from_snapshot(a.instance_id, a.snapshot_id)])


async def _snapshot(c: FleetClient, a: Args) -> int:
    s = await c.snapshot_machine(a.machine_id, a.name, memory=a.memory)
    with_memory = ", with memory" if s.memory else ""
    return emit(a, s, lambda: f"{s.id} {s.name} ({s.how}, paused {s.pause_ms:g} ms{with_memory})")


async def _snapshots(c: FleetClient, a: Args) -> int:
    got = await c.list_snapshots(a.instance_id)
    rows = [[s.id, s.name, s.machine_id, s.created_at.isoformat(timespec="seconds"), s.how]
            for s in got]  # fmt: skip
    return emit(a, got, lambda: table(rows, ["ID", "NAME", "MACHINE", "CREATED", "HOW"]))


async def _drop(c: FleetClient, a: Args) -> int:
    deleted = await c.delete_snapshot(a.snapshot_id)
    return emit(a, {"deleted": deleted}, lambda: f"deleted {a.snapshot_id}")
