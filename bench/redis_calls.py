"""Benchmark 13: what a stage's Redis step costs the calling process, one command at a time
against auto-pipelined (``controlplane/redis_autopipe.py``).

64 callers at once (a stage's handler slots) each run the stages' real step,
``store.stages.advance`` (the compare-and-set Lua script returning the machine's hash), on
machines of a real valkey. Baseline: the same calls through redis-py's plain client, which
sends each command on a pooled connection of its own. The figure is the client's CPU per call
(user + system of this process), measured on the same server in the same run; the valkey
server's CPU is reported beside it.
"""

from __future__ import annotations

import asyncio
import resource
import secrets
import time

import redis.asyncio as aioredis

from bench.common import Figure, Report, temp_dir
from bench.procstat import cpu_seconds
from contracts.status import MachineStatus as S
from controlplane.redis_autopipe import AutoPipelineRedis
from controlplane.redis_client import MAX_CONNECTIONS
from controlplane.store import Store
from fleet.up import ValkeyServer

CALLERS = 64


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _per_call(client: aioredis.Redis, ids: list[str], server_pid: int) -> tuple[float, float]:
    """(client CPU µs per advance, server CPU µs per advance) with CALLERS in flight."""
    store = Store.on_client(client)
    gate = asyncio.Semaphore(CALLERS)

    async def one(mid: str, target: S) -> None:
        async with gate:
            await store.stages.advance(mid, target, "bench")

    for target in (S.PROVISIONING, S.BOOTING):  # the first pass warms the pool and the script
        c0, s0 = _cpu(), cpu_seconds(server_pid) or 0.0
        await asyncio.gather(*(one(m, target) for m in ids))
        client_s, server_s = _cpu() - c0, (cpu_seconds(server_pid) or 0.0) - s0
    return client_s / len(ids) * 1e6, server_s / len(ids) * 1e6


async def run(report: Report, quick: bool) -> None:
    n = 2000 if quick else 10_000
    print(f"[13] Redis: {n} stage steps (advance), {CALLERS} callers at once")
    with temp_dir() as root:
        v = ValkeyServer(root / "valkey", password=secrets.token_hex(8))
        with v:
            await _compare(report, v, n)


async def _compare(report: Report, v: ValkeyServer, n: int) -> None:
    assert v.proc is not None
    results = {}
    for name, cls in (("plain", aioredis.Redis), ("auto-pipelined", AutoPipelineRedis)):
        pool = aioredis.BlockingConnectionPool.from_url(
            v.url, max_connections=MAX_CONNECTIONS, decode_responses=True
        )
        client = cls.from_pool(pool)
        store = Store.on_client(client)
        ids = []
        inst = await store.create_instance(f"bench-{name}")
        for _ in range(n):
            ids.append((await store.create_machine(inst.id, "swarm")).id)
        t0 = time.perf_counter()
        results[name] = await _per_call(client, ids, v.proc.pid)
        print(f"    {name}: {time.perf_counter() - t0:.2f} s for two passes")
        await client.aclose()
    (plain_c, plain_s), (auto_c, auto_s) = results["plain"], results["auto-pipelined"]
    report.add(Figure("13", "client CPU per stage step", auto_c, "µs", plain_c,
                      "one command at a time"))  # fmt: skip
    report.add(Figure("13", "valkey CPU per stage step", auto_s, "µs", plain_s,
                      "one command at a time"))  # fmt: skip
