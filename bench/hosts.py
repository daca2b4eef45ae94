"""Benchmark 20: swarm machines over 4 hosts (`fleet up --hosts 4`) against one host, and the
time from a host's death to all its machines marked lost.

Each layout in turn, in the same run, on fresh servers (one nats-server, one valkey): `fleet
up` with one host (no capacity: the default), then `fleet up --hosts 4` with
``FLEET_HOST_CAPACITY`` at a quarter of ``N`` each, so that every host fills and the capacity
gate of every provisioner is at work to the last machine. ``N`` swarm machines are created
(JSON-RPC batches, as benchmark 11) and timed to the last ``machine.ready``; then
``hosts.list`` gives how many landed on each host, and each host's CPU seconds during the
creates are read from /proc (its provisioner and its swarm processes, which run its
machines). All hosts run on the same cores here, so this measures what the pull placement
costs (four provisioners competing for one durable consumer, each counting its room in
valkey), not what four machines' worth of cores would add.

Then, on the 4-host layout, the last host dies: `fleet up` is frozen (SIGSTOP: it would
restart what dies), that host's provisioner and swarm processes are SIGKILLed, and the time to
the last of its machines' ``machine.lost`` is measured against ``FLEET_HOST_LOST_AFTER_S``
(set to 20 s here; the machines' own heartbeats keep the default 5 s, 3 missed).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import Figure, Report, temp_dir
from bench.pipeline import host_pids
from bench.procstat import children, cmdline, cpu_seconds
from bench.scale import _create
from bench.stack import EventWatch, FleetUp, Gateway, servers
from contracts.bus.subjects import EventKind
from contracts.gateway.hosts import HOSTS_LIST
from contracts.gateway.rpc import MACHINES_LIST
from contracts.gateway.types import ListMachinesParams
from contracts.rpc.jsonrpc import NoParams

HOSTS = 4
HOST_SIZE = 250
LOST_AFTER_S = 20.0


@dataclass
class Outcome:
    ready: int = 0
    create_s: float | None = None
    #: host id -> running machines, from hosts.list.
    placed: dict[str, int] = field(default_factory=dict)
    #: host id -> CPU seconds of its provisioner and swarm processes during the creates.
    cpu_s: dict[str, float] = field(default_factory=dict)
    #: The dead host's machines: how many went lost, and the time to the last one.
    lost: int = 0
    lost_s: float | None = None


async def run(report: Report, quick: bool, machines: int | None = None) -> None:
    n = machines or (200 if quick else 1000)
    print(f"[20] hosts: {n} swarm machines over {HOSTS} hosts (capacity {n // HOSTS} each) "
          "against one host; then one host dies")  # fmt: skip
    one = await one_layout(n, hosts=0)
    many = await one_layout(n, hosts=HOSTS)
    report.add(Figure("20", f"time to all {n} ready, {HOSTS} hosts", many.create_s, "s",
                      one.create_s, "one host"))  # fmt: skip
    busiest = max(many.cpu_s.values(), default=None)
    report.add(Figure("20", f"CPU of the busiest of {HOSTS} hosts (provisioner + machines)",
                      busiest, "s", sum(one.cpu_s.values()) or None, "the one host"))  # fmt: skip
    report.add(Figure("20", f"a host's death to all its {many.lost} machines lost",
                      many.lost_s, "s", LOST_AFTER_S, "FLEET_HOST_LOST_AFTER_S"))  # fmt: skip
    spread = ", ".join(f"{h} {k}" for h, k in sorted(many.placed.items()))
    cpu = ", ".join(f"{h} {s:.1f} s" for h, s in sorted(many.cpu_s.items()))
    report.note(f"20: {HOSTS} hosts: {many.ready} of {n} ready; placed {spread}; CPU {cpu}")
    if one.ready < n:
        report.note(f"20: one host: only {one.ready} of {n} ready")


def host_processes(up: FleetUp, hosts: int) -> dict[str, list[int]]:
    """host id -> its provisioner and swarm processes (one host: the default host's)."""
    assert up.proc is not None
    out: dict[str, list[int]] = {}
    for pid in children(up.proc.pid):
        if "services.provisioner" not in cmdline(pid):
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        ids = [e.split(b"=", 1)[1].decode() for e in environ if e.startswith(b"FLEET_HOST_ID=")]
        out.setdefault(ids[0] if hosts and ids else "host", []).append(pid)
    for host in list(out):
        data_dir = up.data_dir / "hosts" / host if hosts else up.data_dir
        out[host] += list(host_pids(data_dir).values())
    return out


def cpu_of(pids: dict[str, list[int]]) -> dict[str, float]:
    return {h: sum(cpu_seconds(p) or 0.0 for p in ps) for h, ps in pids.items()}


async def one_layout(n: int, *, hosts: int) -> Outcome:
    out = Outcome()
    name = f"{hosts} hosts" if hosts else "one host"
    env = {"FLEET_SWARM_HOST_SIZE": str(HOST_SIZE), "FLEET_LOG_LEVEL": "warning",
           "FLEET_HOST_LOST_AFTER_S": str(LOST_AFTER_S)}  # fmt: skip
    args: tuple[str, ...] = ()
    if hosts:
        env["FLEET_HOST_CAPACITY"] = str(n // hosts)
        args = ("--hosts", str(hosts))
    with (
        temp_dir() as root,
        servers(root) as (nats, valkey),
        FleetUp(root, nats.url, valkey.url, extra_env=env, extra_args=args) as up,
    ):
        gw = Gateway(up.url)
        watch = await EventWatch().start(nats.url)
        try:
            before = cpu_of(host_processes(up, hosts))
            ids, t0 = await _create(gw, n)
            with contextlib.suppress(TimeoutError):  # reported as "only k of n ready"
                await watch.wait_all("ready", ids, timeout_s=120 + n / 10)
            ready = [watch.seen["ready", m] for m in ids if ("ready", m) in watch.seen]
            out.ready = len(ready)
            out.create_s = max(ready, default=t0) - t0
            # Processes started during the creates (swarm hosts) count from zero.
            out.cpu_s = {h: s - before.get(h, 0.0)
                         for h, s in cpu_of(host_processes(up, hosts)).items()}  # fmt: skip
            listed = await gw.call(HOSTS_LIST, NoParams())
            out.placed = {h.host_id: h.running for h in listed.hosts}
            print(f"    {name}: {out.ready} of {n} ready in {out.create_s:.1f} s; "
                  f"placed {out.placed}; CPU {out.cpu_s}", flush=True)  # fmt: skip
            if hosts:
                await kill_a_host(up, gw, watch, hosts, out)
        finally:
            await watch.close()
            await gw.close()
    return out


async def kill_a_host(
    up: FleetUp, gw: Gateway, watch: EventWatch, hosts: int, out: Outcome
) -> None:
    """Kill the last host (its provisioner and machines) and time its machines going lost."""
    victim = f"host-{hosts}"
    machines = [m.id for m in (await gw.call(MACHINES_LIST, ListMachinesParams())).machines
                if m.host_id == victim]  # fmt: skip
    pids = host_processes(up, hosts)[victim]
    assert up.proc is not None
    os.kill(up.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.perf_counter()  # as EventWatch's arrival times
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await watch.wait_all(EventKind.LOST.value, machines, timeout_s=LOST_AFTER_S + 60)
    finally:
        os.kill(up.proc.pid, signal.SIGCONT)
    lost = [watch.seen[EventKind.LOST.value, m] for m in machines
            if (EventKind.LOST.value, m) in watch.seen]  # fmt: skip
    out.lost = len(lost)
    out.lost_s = max(lost) - t0 if len(lost) == len(machines) and lost else None
    print(
        f"    {victim} killed: {out.lost} of {len(machines)} machines lost in {out.lost_s} s",
        flush=True,
    )
