"""Benchmark 10: recovery after a SIGKILLed stage service.

`fleet up` with swarm machines; the prober holds each event for ``FLEET_PROBE_DELAY_S`` (its
handler sleeps before probing), so at any moment it holds many unacked events. Mid-batch it is
SIGKILLed; `fleet up` restarts it and JetStream redelivers what it held once the ack wait runs
out. Per machine that was held at the kill (setup-pushed before it, ready after it), the extra
delay is ``ready - setup-pushed - probe delay``: what the kill cost that machine. The figure is
its p95 with the defaults (short ack wait, progress acks); the baseline is the same run with
the old 30 s ack wait.
"""

from __future__ import annotations

import os
import signal
import statistics
import time

from bench.common import Figure, Report, percentile, temp_dir
from bench.stack import EventWatch, FleetUp, Gateway, servers
from contracts.gateway.rpc import (
    INSTANCES_CREATE,
    MACHINES_CREATE,
    CreateInstanceParams,
    CreateMachineParams,
)

PROBE_DELAY_S = 2.0
OLD_ACK_WAIT_S = 30.0


async def run(report: Report, quick: bool) -> None:
    n = 40 if quick else 100
    print(f"[8] recovery: {n} machines, the prober SIGKILLed while it holds events")
    now_s = await _one_run(n, ack_wait_s=None)
    old_s = await _one_run(n, ack_wait_s=OLD_ACK_WAIT_S)
    for label, delays in (("now", now_s), ("30 s ack wait", old_s)):
        report.note(
            f"{label}: {len(delays)} held machines, extra delay median "
            f"{statistics.median(delays):.1f} s, max {max(delays):.1f} s"
            if delays
            else f"{label}: no machine was held at the kill"
        )
    p95, base = _p95(now_s), _p95(old_s)
    report.add(Figure("10", "recovery after a SIGKILLed prober, p95", p95, "s", base,
                      "30 s ack wait", "≤ 5 s", p95 is not None and p95 <= 5.0))  # fmt: skip


def _p95(values: list[float]) -> float | None:
    return percentile(values, 95) if values else None


async def _one_run(n: int, *, ack_wait_s: float | None) -> list[float]:
    env = {"FLEET_PROBE_DELAY_S": str(PROBE_DELAY_S), "FLEET_SWARM_HOST_SIZE": "250"}
    if ack_wait_s is not None:
        env["FLEET_ACK_WAIT_S"] = str(ack_wait_s)
    with (
        temp_dir() as root,
        servers(root) as (ns, valkey),
        FleetUp(root, ns.url, valkey.url, extra_env=env) as up,
    ):
        gw = Gateway(up.url)
        watch = await EventWatch().start(ns.url)
        try:
            insts = await gw.batch(
                INSTANCES_CREATE, [CreateInstanceParams(name=f"r{i}") for i in range(n)]
            )
            calls = [CreateMachineParams(instance_id=i.id, provider="swarm") for i in insts]
            ids = [m.id for m in await gw.batch(MACHINES_CREATE, calls)]
            # Kill once half the machines are pushed: the prober then holds up to all of them.
            await watch.wait_count("setup-pushed", n // 2, timeout_s=120)
            os.kill(up.service_pids()["prober"], signal.SIGKILL)
            killed = time.perf_counter()
            await watch.wait_all("ready", ids, timeout_s=180)
        finally:
            await watch.close()
            await gw.close()
    held = [
        m for m in ids
        if watch.seen.get(("setup-pushed", m), 1e18) < killed < watch.seen.get(("ready", m), 0)
    ]  # fmt: skip
    return [watch.seen["ready", m] - watch.seen["setup-pushed", m] - PROBE_DELAY_S for m in held]
