"""Benchmark 25: machines.create latency on the `--ha` layout while a NATS node is lost.

One `fleet up` against the layout of `fleet up --ha` (``bench.scale.layout``), swarm machines.
First ``N`` creates with nothing failing (the baseline), then the node that leads the event
stream is SIGKILLed (nothing restarts it here) and ``N`` more creates are sent at once: the
gateway rides out its reconnect and the stream leader's election within its publish deadline
(``FLEET_GATEWAY_PUBLISH_WAIT_S``), so each create is answered, slower. Each call is timed
from its send to its answer, ``CONCURRENCY`` in flight; the figure is the p99 during the loss
against the p99 without. A create answered with an error is counted and reported.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import nats

from bench.common import Figure, Report, percentile, temp_dir
from bench.scale import layout
from bench.stack import FleetUp, Gateway, RpcError
from contracts.bus import subjects
from contracts.gateway.rpc import (
    INSTANCES_CREATE,
    MACHINES_CREATE,
    CreateInstanceParams,
    CreateMachineParams,
)
from fleet.up import NatsServer

CONCURRENCY = 4


async def run(report: Report, quick: bool) -> None:
    n = 40 if quick else 100
    print(f"[25] creates on --ha, {n} before and {n} while the stream leader's node is lost")
    with (
        temp_dir() as root,
        layout(root, "ha") as lay,
        FleetUp(root, lay.nats_url, lay.redis_url, extra_env=lay.env) as up,
    ):
        gw = Gateway(up.url)
        try:
            steady, steady_errors = await _creates(gw, n, "a")
            node = await _stream_leader(lay.nats)
            assert node.proc is not None
            os.kill(node.proc.pid, signal.SIGKILL)
            lost, lost_errors = await _creates(gw, n, "b")
        finally:
            await gw.close()
    p99, base = percentile(lost, 99), percentile(steady, 99)
    report.note(f"25: steady: p50 {percentile(steady, 50) * 1000:.0f} ms, {steady_errors} errors; "
                f"node lost: p50 {percentile(lost, 50) * 1000:.0f} ms, max "
                f"{max(lost) * 1000:.0f} ms, {lost_errors} errors")  # fmt: skip
    report.add(Figure("25", "machines.create p99 while a NATS node is lost (--ha)", p99 * 1000,
                      "ms", base * 1000, "no node lost", "every create answered",
                      lost_errors == 0))  # fmt: skip


async def _creates(gw: Gateway, n: int, tag: str) -> tuple[list[float], int]:
    """``n`` machines.create (instances made first, not timed): each call's seconds, and how
    many answered an error."""
    names = [CreateInstanceParams(name=f"{tag}{i}") for i in range(n)]
    instances = await gw.batch(INSTANCES_CREATE, names)
    slots = asyncio.Semaphore(CONCURRENCY)
    errors = 0

    async def one(instance_id: str) -> float:
        nonlocal errors
        async with slots:
            t0 = time.perf_counter()
            try:
                await gw.call(MACHINES_CREATE, CreateMachineParams(instance_id=instance_id,
                                                                   provider="swarm"))  # fmt: skip
            except RpcError as exc:
                errors += 1
                print(f"    create answered {exc}")
            return time.perf_counter() - t0

    took = await asyncio.gather(*(one(i.id) for i in instances))
    return list(took), errors


async def _stream_leader(nodes: list[NatsServer]) -> NatsServer:
    nc = await nats.connect([n.url for n in nodes])
    try:
        info = await nc.jetstream(timeout=10).stream_info(subjects.STREAM_NAME)
    finally:
        await nc.close()
    leader = info.cluster.leader if info.cluster else None
    return next(n for n in nodes if getattr(n, "server_name", None) == leader)
