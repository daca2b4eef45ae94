"""Benchmark 6: the gateway under a batch attack and a stream attack.

`fleet up` runs the gateway as its own process; its RSS is read from /proc and ``/healthz`` is
timed from here. Baseline (same run): ``/healthz`` p99 and RSS of the idle gateway. Then:

- batch attack: 3 clients each posting 1 MB JSON-RPC batches of ``rpc.discover`` back to back
  (before the limits: a 629 MB answer per batch, 3.3 GB of gateway, /healthz stalled 21 s);
- stream attack: one instance token opening ``streams`` ``GET /events`` (all but
  FLEET_EVENTS_MAX_PER_TOKEN refused with 429), and as many more from other tokens as the
  gateway admits (FLEET_EVENTS_MAX_STREAMS), all held open (no events are published meanwhile:
  this measures holding the streams, not fanning events out to them).

Targets: gateway RSS under 200 MB and /healthz p99 under 100 ms while each attack runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

import aiohttp

from bench.common import Figure, Report, percentile, temp_dir
from bench.procstat import rss_mb
from bench.stack import ADMIN_TOKEN, FleetUp, Gateway, servers
from contracts.gateway import rpc as g
from contracts.gateway.rpc import CreateInstanceParams, CreateMachineParams, CreateTokenParams

RSS_TARGET_MB = 200.0
P99_TARGET_MS = 100.0


class Probe:
    """/healthz timed every 20 ms and the gateway's RSS sampled, until stopped."""

    def __init__(self, url: str, pid: int) -> None:
        self.url, self.pid = url, pid
        self.latencies_ms: list[float] = []
        self.rss: list[float] = []
        self._stop = asyncio.Event()

    async def run(self, session: aiohttp.ClientSession) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            async with session.get(f"{self.url}/healthz") as r:
                await r.read()
            self.latencies_ms.append((time.perf_counter() - t0) * 1000)
            self.rss.append(rss_mb(self.pid) or 0.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.02)

    def stop(self) -> None:
        self._stop.set()


async def probed(url: str, pid: int, attack: asyncio.Future[object] | None, seconds: float
                 ) -> Probe:  # fmt: skip
    probe = Probe(url, pid)
    async with aiohttp.ClientSession() as s:
        task = asyncio.create_task(probe.run(s))
        await asyncio.sleep(seconds)
        probe.stop()
        await task
    if attack is not None:
        attack.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
            await attack
    return probe


def discover_batch(size_bytes: int) -> bytes:
    one = b'{"jsonrpc":"2.0","id":%d,"method":"' + g.RPC_DISCOVER.name.encode() + b'"}'
    items, total, i = [], 2, 0
    while total < size_bytes:
        item = one % i
        items.append(item)
        total += len(item) + 1
        i += 1
    return b"[" + b",".join(items) + b"]"


async def batch_attack(url: str, clients: int = 3) -> Counter[int]:
    body = discover_batch(1024 * 1024 - 1024)
    statuses: Counter[int] = Counter()
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}

    async def one_client(s: aiohttp.ClientSession) -> None:
        while True:
            async with s.post(f"{url}/rpc", data=body, headers=headers) as r:
                await r.read()
                statuses[r.status] += 1

    async with aiohttp.ClientSession() as s:
        await asyncio.gather(*(one_client(s) for _ in range(clients)))
    return statuses


async def stream_attack(url: str, tokens: list[str], machine_id: str, per_token: int,
                        opened: Counter[int]) -> None:  # fmt: skip
    """Hold ``per_token`` streams per token open (the refused ones are counted and dropped)."""
    async with contextlib.AsyncExitStack() as es:
        conn = aiohttp.TCPConnector(limit=0)
        s = await es.enter_async_context(aiohttp.ClientSession(connector=conn))
        for token in tokens:
            headers = {"Authorization": f"Bearer {token}"}
            for _ in range(per_token):
                r = await es.enter_async_context(
                    s.get(f"{url}/events", params={"machineId": machine_id}, headers=headers)
                )
                opened[r.status] += 1
        await asyncio.Event().wait()  # held until cancelled


async def run(report: Report, quick: bool) -> None:
    print("\n6. gateway under the batch and stream attacks")
    seconds = 5.0 if quick else 15.0
    streams = 300 if quick else 1000
    with temp_dir() as root, servers(root) as (ns, valkey), FleetUp(root, ns.url, valkey.url) as up:
        pid = up.service_pids()["gateway"]
        gw = Gateway(up.url)
        try:
            inst = await gw.call(g.INSTANCES_CREATE, CreateInstanceParams(name="attacked"))
            machine = await gw.call(
                g.MACHINES_CREATE, CreateMachineParams(instance_id=inst.id, provider="swarm")
            )
            tokens = [
                (await gw.call(g.TOKENS_CREATE, CreateTokenParams(name=f"t{i}",
                                                                  instance_id=inst.id))).token
                for i in range(streams // 20 + 1)
            ]  # fmt: skip
        finally:
            await gw.close()
        base = await probed(up.url, pid, None, seconds / 2)
        batches = asyncio.ensure_future(batch_attack(up.url))
        under_batch = await probed(up.url, pid, batches, seconds)
        opened: Counter[int] = Counter()
        attack = stream_attack(up.url, tokens[:1], machine.id, streams, opened)
        flood = asyncio.ensure_future(attack)
        await asyncio.sleep(seconds / 3)  # the refused ones are answered by now
        flood2 = asyncio.ensure_future(stream_attack(up.url, tokens[1:], machine.id, 20, opened))
        under_streams = await probed(up.url, pid, flood2, seconds)
        flood.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flood
    _figures(report, base, under_batch, under_streams)
    report.note(f"stream attack answers by HTTP status: {dict(opened)}")


def _figures(report: Report, base: Probe, batch: Probe, streams: Probe) -> None:
    p99 = percentile(base.latencies_ms, 99)
    rss = max(base.rss)
    for name, probe in (("batch attack", batch), ("stream attack", streams)):
        value = percentile(probe.latencies_ms, 99)
        report.add(Figure("6", f"/healthz p99 during the {name}", value, "ms", p99, "idle",
                          f"< {P99_TARGET_MS:.0f} ms", value < P99_TARGET_MS))  # fmt: skip
        peak = max(probe.rss)
        report.add(Figure("6", f"gateway peak RSS during the {name}", peak, "MB", rss, "idle",
                          f"< {RSS_TARGET_MB:.0f} MB", peak < RSS_TARGET_MB))  # fmt: skip
