"""Benchmark 11: many swarm machines on the `--ha` layout against one node.

Each layout in turn, in the same run: `fleet up` (one process per service) against servers
started here, either one nats-server and one valkey, or the layout of `fleet up --ha` (3 NATS
nodes in a cluster, the stream at 3 replicas, valkey with 2 replicas and 3 sentinels,
``fleet.up.embedded_ha``). ``N`` swarm machines are created (JSON-RPC batches, as benchmark 3)
and timed to the last ``machine.ready``; their daemons get every node's URL and nats-py picks
one at random, so they spread over the 3 nodes (the connections per node are counted). Then
``machines.refreshEnv`` (every running machine; it answers once each has written its .env),
timed 3 times (the median); and the RSS of each NATS node. The single node's figures are the
baseline of the `--ha` ones. The single node runs first, then `--ha`, on a shared host: the
order and the load of the moment weigh on the ratios.
"""

from __future__ import annotations

import contextlib
import secrets
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import Figure, Report, temp_dir
from bench.procstat import peak_rss_mb, rss_mb
from bench.stack import EventWatch, FleetUp, Gateway, RpcError, connz
from contracts.gateway.rpc import (
    INSTANCES_CREATE,
    MACHINES_CREATE,
    MACHINES_REFRESH_ENV,
    CreateInstanceParams,
    CreateMachineParams,
    RefreshEnvParams,
)
from contracts.models import Instance
from fleet.up import SENTINEL_MASTER, HaServers, NatsServer, ValkeyServer

HOST_SIZE = 250
BATCH = 50
FANOUT_TARGET_S = 10.0
FANOUT_RUNS = 3


@dataclass
class Layout:
    name: str
    nats: list[NatsServer]
    redis_url: str
    env: dict[str, str]

    @property
    def nats_url(self) -> str:
        return ",".join(n.url for n in self.nats)


@dataclass
class Outcome:
    ready: int = 0
    create_s: float | None = None
    fanout_s: float | None = None
    written: int = 0
    #: Per NATS node: (daemon connections, RSS MB after the fan-out, peak RSS MB).
    nodes: list[tuple[int, float, float]] = field(default_factory=list)


@contextlib.contextmanager
def layout(root: Path, name: str) -> Iterator[Layout]:
    env = {"FLEET_SWARM_HOST_SIZE": str(HOST_SIZE), "FLEET_LOG_LEVEL": "warning"}
    if name == "single":
        nats = NatsServer(root / "nats", monitor=True)
        valkey = ValkeyServer(root / "redis", password=secrets.token_urlsafe(16))
        with nats, valkey:
            yield Layout(name, [nats], valkey.url, env)
        return
    with HaServers(root / "ha", auth=None, redis_password=secrets.token_urlsafe(16)) as ha:
        env |= {
            "FLEET_STREAM_REPLICAS": "3",
            "FLEET_REDIS_SENTINELS": ha.sentinel_addrs,
            "FLEET_REDIS_SENTINEL_MASTER": SENTINEL_MASTER,
        }
        yield Layout(name, list(ha.nats), ha.redis_url, env)


async def run(report: Report, quick: bool, machines: int | None = None) -> None:
    n = machines or (300 if quick else 1000)
    print(f"[11] scale: {n} swarm machines, refreshEnv to all, one NATS node against 3 (--ha)")
    single = await one_layout("single", n)
    ha = await one_layout("ha", n)
    _figures(report, n, single, ha)


async def one_layout(name: str, n: int) -> Outcome:
    out = Outcome()
    with (
        temp_dir() as root,
        layout(root, name) as lay,
        FleetUp(root, lay.nats_url, lay.redis_url, extra_env=lay.env) as up,
    ):
        gw = Gateway(up.url)
        watch = await EventWatch().start(lay.nats[0].url)
        try:
            ids, t0 = await _create(gw, n)
            with contextlib.suppress(TimeoutError):  # reported as "only k of n ready"
                await watch.wait_all("ready", ids, timeout_s=120 + n / 10)
            ready = [watch.seen["ready", m] for m in ids if ("ready", m) in watch.seen]
            out.ready = len(ready)
            out.create_s = max(ready, default=t0) - t0
            print(f"    {name}: {out.ready} of {n} ready in {out.create_s:.1f} s", flush=True)
            await _fan_out(gw, name, out)
            out.nodes = [_node(s) for s in lay.nats]
        finally:
            await watch.close()
            await gw.close()
    return out


async def _create(gw: Gateway, n: int) -> tuple[list[str], float]:
    """Instances first (not timed), then every machines.create in batches, one at a time (the
    provisioner is the bottleneck either way): the machine ids and when the first was sent."""
    instances: list[Instance] = []
    for i in range(0, n, 100):
        names = [CreateInstanceParams(name=f"s{j}") for j in range(i, min(n, i + 100))]
        instances += await gw.batch(INSTANCES_CREATE, names)
    t0 = time.perf_counter()
    ids: list[str] = []
    for i in range(0, n, BATCH):
        chunk = instances[i : i + BATCH]
        calls = [CreateMachineParams(instance_id=inst.id, provider="swarm") for inst in chunk]
        ids += [m.id for m in await gw.batch(MACHINES_CREATE, calls)]
    return ids, t0


async def _fan_out(gw: Gateway, name: str, out: Outcome) -> None:
    """refreshEnv to every machine, FANOUT_RUNS times (the shared host's load varies from
    second to second): the median, and what the last one wrote."""
    times = []
    for _ in range(FANOUT_RUNS):
        t0 = time.perf_counter()
        try:
            result = await gw.call(MACHINES_REFRESH_ENV, RefreshEnvParams())
        except RpcError as exc:
            print(f"    {name}: refreshEnv answered {exc}")
            return
        times.append(time.perf_counter() - t0)
        out.written = result.written
    out.fanout_s = statistics.median(times)
    runs = ", ".join(f"{t:.2f}" for t in times)
    print(f"    {name}: refreshEnv wrote {out.written}: {runs} s (median {out.fanout_s:.2f} s)")


def _node(server: NatsServer) -> tuple[int, float, float]:
    pid = server.proc.pid if server.proc else 0
    conns = len(connz(server))
    return conns, rss_mb(pid) or 0.0, peak_rss_mb(pid) or 0.0


def _figures(report: Report, n: int, single: Outcome, ha: Outcome) -> None:
    report.add(Figure("11", f"time to all {n} ready, --ha (3 nodes, R3)", ha.create_s, "s",
                      single.create_s, "one node"))  # fmt: skip
    met = ha.fanout_s is not None and ha.fanout_s < FANOUT_TARGET_S and ha.written == n
    report.add(Figure("11", f"refreshEnv to {n} machines, --ha", ha.fanout_s, "s",
                      single.fanout_s, "one node", "< 10 s", met))  # fmt: skip
    one_conns, one_rss, one_peak = single.nodes[0]
    for i, (conns, rss, peak) in enumerate(ha.nodes):
        report.add(Figure("11", f"peak RSS nats node {i} ({conns} connections)", peak, "MB",
                          one_peak, f"one node ({one_conns} connections)"))  # fmt: skip
        report.note(f"nats node {i}: {rss:.0f} MB RSS after the fan-out, {conns} connections")
    report.note(f"one node: {one_rss:.0f} MB RSS after the fan-out, {one_conns} connections")
    for name, o in (("one node", single), ("--ha", ha)):
        if o.ready < n or o.written < n:
            report.note(f"{name}: only {o.ready} of {n} ready, refreshEnv wrote {o.written}")
