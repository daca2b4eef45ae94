"""Benchmark 27's door row: a gvisor machine's create-to-ready while root in another gvisor
machine keeps 20,000 connections going at the egress proxy's door on the host
(providers/egress/proxy_door.py), against the same create with the door idle, in the same run
and the same stack (bench/gvisor.py's), alternating.

The attacker runs ``FLOOD`` as root of its own kernel (``machines.exec --user root``): 20,000
connections to the door opened at once, each one the door answers or closes opened again,
for as long as the creates take (bounded in time and attempts). A loaded create starts once
the host holds at least ``AT_THE_DOOR`` of the attacker's connections to the door's port
(established or being opened: its pasta's ends), counted off the clock; the count at each
loaded create's start and what the attacker got back are in the row's note.

Target: a create beside the flood within 2x the idle one's (the door's lookups run in a thread
of its own, never the provisioner's default executor, which a machine's start needs).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.common import Report
from bench.gvisor_steps import Steps, figure, p50
from bench.warm_pool import _Side
from contracts.daemon.rpc import ExecCommandResult
from contracts.gateway.rpc import MACHINES_CREATE, MACHINES_EXEC, CreateMachineParams
from contracts.gateway.types import MachineExecParams
from controlplane.settings import Settings

CONNECTIONS = 20_000
#: The attacker's connections the host must hold before a loaded create starts.
AT_THE_DOOR = 5_000
#: Root in a machine: ``count`` connections to the door (argv: host, port, count, seconds, a
#: path) kept open for ``seconds`` or until the path exists, each one the door answers or
#: closes opened again (one the machine cannot open, for want of descriptors or buffers, at
#: the next turn); in as many processes as the machine's limit on descriptors needs; bounded
#: in time and in attempts. Each process prints its attempts and what came back (the answers'
#: first lines), counted, on a line of its own.
FLOOD = """
import collections, os, resource, selectors, socket, sys, time
host, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
stop = sys.argv[5]
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
def flood(count):
    sel, said, attempts = selectors.DefaultSelector(), collections.Counter(), 0
    def another():
        nonlocal attempts
        attempts += 1
        try:
            s = socket.socket()
        except OSError as exc:  # out of descriptors or buffers: tried again at the next turn
            said[f"not opened: {exc.strerror}"] += 1
            return False
        s.setblocking(False)
        s.connect_ex((host, port))
        sel.register(s, selectors.EVENT_READ)
        return True
    end = time.monotonic() + seconds
    while time.monotonic() < end and attempts < 20 * count and not os.path.exists(stop):
        for _ in range(count - len(sel.get_map())):
            if not another():
                break
        for key, _ in sel.select(timeout=0.5):
            try:
                got = key.fileobj.recv(200)
            except OSError as exc:
                got = str(exc).encode()
            said[(got.split(b"\\r\\n")[0] or b"closed").decode(errors="replace")] += 1
            sel.unregister(key.fileobj)
            key.fileobj.close()
    print(attempts, dict(said), flush=True)
per = max(1, hard - 64)
shares = [min(per, count - i) for i in range(0, count, per)]
children = []
for share in shares[1:]:
    pid = os.fork()
    if pid == 0:
        flood(share)
        os._exit(0)
    children.append(pid)
flood(shares[0])
for pid in children:
    os.waitpid(pid, 0)
"""
_WAIT_S = 300.0
#: Where the bench tells the attacker's flood to end (the machine's own /tmp).
_STOP = "/tmp/fleet-bench-door-stop"


def at_the_door(port: int) -> int:
    """This host's TCP sockets to ``port`` established or being opened (a pasta's ends)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            if f[3] in ("01", "02") and int(f[2].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


async def _create(side: _Side) -> float:
    t0 = time.perf_counter()
    machine = await side.gw.call(
        MACHINES_CREATE, CreateMachineParams(instance_id=side.instances.pop(), runtime="gvisor")
    )
    await side.watch.wait_all("ready", [machine.id], timeout_s=_WAIT_S)
    if machine.id in side.watch.failed:
        raise RuntimeError(f"machine {machine.id} failed: {side.watch.failed[machine.id]}")
    return side.watch.seen["ready", machine.id] - t0


async def _flooding(port: int, flood: asyncio.Task[object]) -> int:
    """Until the host holds ``AT_THE_DOOR`` of the flood's connections: how many it holds."""
    async with asyncio.timeout(_WAIT_S):
        while (held := await asyncio.to_thread(at_the_door, port)) < AT_THE_DOOR:
            if flood.done():
                raise RuntimeError(f"the flood ended before it reached the door: {flood.result()}")
            await asyncio.sleep(0.2)
    return held


async def measure(side: _Side, attacker: str, rounds: int, times: dict[str, list[float]]) -> str:
    """``rounds`` idle and loaded creates, alternating, into ``times``; what the attacker got."""
    host = urlsplit(side.nats_url).hostname or "127.0.0.1"
    port = Settings().secrets_proxy_port
    times["door idle create"], times["door flooded create"], times["at the door"] = [], [], []
    said = []
    for _ in range(rounds):
        times["door idle create"].append(await _create(side))
        await _as_root(side, attacker, ["rm", "-f", _STOP])
        argv = ["python3", "-c", FLOOD, host, str(port), str(CONNECTIONS), "600", _STOP]
        flood = asyncio.create_task(_as_root(side, attacker, argv, timeout_s=900))
        try:
            times["at the door"].append(await _flooding(port, flood))
            times["door flooded create"].append(await _create(side))
        finally:
            await _as_root(side, attacker, ["touch", _STOP])
            got = await flood
        # A line from each flooding process (its attempts, what came back), joined: one a round.
        said.append(" | ".join(filter(None, got.stdout.splitlines())) or got.stderr[-200:])
    return "; ".join(said)


async def _as_root(
    side: _Side, mid: str, argv: list[str], timeout_s: float = 60
) -> ExecCommandResult:
    params = MachineExecParams(machine_id=mid, command=argv, timeout_s=timeout_s, user="root")
    return await side.gw.call(MACHINES_EXEC, params)


def report_door(report: Report, steps: Steps, times: dict[str, list[float]], note: str) -> None:
    idle, flooded = p50(times, "door idle create"), p50(times, "door flooded create")
    held = times.get("at the door") or []
    if held:
        note += (
            f"; the host held {min(held):.0f}-{max(held):.0f} of the attacker's connections "
            "to the door at each loaded create's start"
        )
    figure(report, steps, "door", f"gvisor create-to-ready p50, {CONNECTIONS:,} connections at "
           "the egress proxy's door", flooded, "s", idle, "the door idle", target="<= 2x",
           met=flooded is not None and idle is not None and flooded <= 2 * idle,
           note=note)  # fmt: skip
