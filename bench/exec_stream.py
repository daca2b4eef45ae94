"""Benchmark 7: streamed exec's first byte against a whole non-streamed exec.

On the embedded stack with one local machine: ``machines.exec`` of ``echo x`` (the call until
its answer), and ``machines.execStream`` of the same command over ``POST /rpc/stream`` (the call
until the first output chunk arrives), interleaved, through the same client. The target: the
streamed first byte's p50 at most 1.2x the non-streamed p50.
"""

from __future__ import annotations

import contextlib
import time

from bench.common import Figure, Report, percentile, temp_dir
from bench.stack import ADMIN_TOKEN, EventWatch, FleetUp, servers
from contracts.daemon.rpc import OutputChunk
from fleet.client import FleetClient

ARGV = ["echo", "x"]


async def first_byte(client: FleetClient, machine_id: str) -> float:
    t0 = time.perf_counter()
    stream = client.exec_stream(machine_id, ARGV)
    async with contextlib.aclosing(stream):
        first = None
        async for item in stream:
            if first is None and isinstance(item, OutputChunk):
                first = time.perf_counter() - t0
    assert first is not None, "no output chunk arrived"
    return first


async def whole_exec(client: FleetClient, machine_id: str) -> float:
    t0 = time.perf_counter()
    await client.exec(machine_id, ARGV)
    return time.perf_counter() - t0


async def run(report: Report, quick: bool) -> None:
    n = 30 if quick else 200
    print(f"[6] streamed exec first byte vs machines.exec: {n} samples each, local provider")
    with temp_dir() as root, servers(root) as (ns, valkey), FleetUp(root, ns.url, valkey.url) as up:
        watch = await EventWatch().start(ns.url)
        async with FleetClient(up.url, ADMIN_TOKEN) as client:
            try:
                inst = await client.create_instance("bench-stream")
                machine = await client.create_machine(inst.id)
                await watch.wait_all("ready", [machine.id], timeout_s=60)
            finally:
                await watch.close()
            for _ in range(5):  # warm both paths (connections, caches)
                await whole_exec(client, machine.id)
                await first_byte(client, machine.id)
            plain, streamed = [], []
            for _ in range(n):
                plain.append(await whole_exec(client, machine.id))
                streamed.append(await first_byte(client, machine.id))
    p50, base = percentile(streamed, 50), percentile(plain, 50)
    report.add(Figure("7", "streamed exec first byte p50", p50, "s", base, "machines.exec p50",
                      "<= 1.2x", p50 <= 1.2 * base))  # fmt: skip
    report.add(Figure("7", "streamed exec first byte p95", percentile(streamed, 95), "s",
                      percentile(plain, 95), "machines.exec p95"))  # fmt: skip
