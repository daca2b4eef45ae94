"""Benchmark 20: swarm machines over 4 hosts (`fleet up --hosts 4`) against one host.

Each layout in turn, in the same run, on fresh servers (one nats-server, one valkey): `fleet
up` with one host (no capacity: the default), then `fleet up --hosts 4` with
``FLEET_HOST_CAPACITY`` at a quarter of ``N`` each, so that every host fills and the capacity
gate of every provisioner is at work to the last machine. ``N`` swarm machines are created
(JSON-RPC batches, as benchmark 11) and timed to the last ``machine.ready``; then
``hosts.list`` gives how many landed on each host. All hosts run on the same cores here, so
this measures what the pull placement costs (four provisioners competing for one durable
consumer, each counting its room in valkey), not what four machines' worth of cores would add.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from bench.common import Figure, Report, temp_dir
from bench.scale import _create
from bench.stack import EventWatch, FleetUp, Gateway, servers
from contracts.gateway_hosts import HOSTS_LIST
from contracts.jsonrpc import NoParams

HOSTS = 4
HOST_SIZE = 250


@dataclass
class Outcome:
    ready: int = 0
    create_s: float | None = None
    #: host id -> running machines, from hosts.list.
    placed: dict[str, int] = field(default_factory=dict)


async def run(report: Report, quick: bool, machines: int | None = None) -> None:
    n = machines or (200 if quick else 1000)
    print(f"[20] hosts: {n} swarm machines over {HOSTS} hosts (capacity {n // HOSTS} each) "
          "against one host")  # fmt: skip
    one = await one_layout(n, hosts=0)
    many = await one_layout(n, hosts=HOSTS)
    report.add(Figure("20", f"time to all {n} ready, {HOSTS} hosts", many.create_s, "s",
                      one.create_s, "one host"))  # fmt: skip
    spread = ", ".join(f"{h} {k}" for h, k in sorted(many.placed.items()))
    report.note(f"{HOSTS} hosts: {many.ready} of {n} ready; placed {spread}")
    if one.ready < n:
        report.note(f"one host: only {one.ready} of {n} ready")


async def one_layout(n: int, *, hosts: int) -> Outcome:
    out = Outcome()
    name = f"{hosts} hosts" if hosts else "one host"
    env = {"FLEET_SWARM_HOST_SIZE": str(HOST_SIZE), "FLEET_LOG_LEVEL": "warning"}
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
            ids, t0 = await _create(gw, n)
            with contextlib.suppress(TimeoutError):  # reported as "only k of n ready"
                await watch.wait_all("ready", ids, timeout_s=120 + n / 10)
            ready = [watch.seen["ready", m] for m in ids if ("ready", m) in watch.seen]
            out.ready = len(ready)
            out.create_s = max(ready, default=t0) - t0
            listed = await gw.call(HOSTS_LIST, NoParams())
            out.placed = {h.host_id: h.running for h in listed.hosts}
            print(f"    {name}: {out.ready} of {n} ready in {out.create_s:.1f} s; "
                  f"placed {out.placed}", flush=True)  # fmt: skip
        finally:
            await watch.close()
            await gw.close()
    return out
