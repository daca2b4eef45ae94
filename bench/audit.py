"""Benchmark 21: what the audit log costs. Two `fleet up` stacks, each on servers of its own,
one with ``FLEET_AUDIT_ENABLED=false`` (the baseline) and one recording (the default), driven
alternately so that both see the same load: create-to-ready (benchmark 2's measure) and the
p50 of a state-changing gateway call (``instances.create``, one at a time; each recorded), and
the rate of such calls with 64 in flight (each recorded: the audit writer's cost under load)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from bench.common import Figure, Report, median, percentile, temp_dir
from bench.create_ready import _one
from bench.stack import EventWatch, FleetUp, Gateway, servers
from contracts.gateway.rpc import INSTANCES_CREATE, CreateInstanceParams

MODES = ("off", "on")
#: Calls in flight for the throughput figure.
IN_FLIGHT = 64


async def _rate(gw: Gateway, calls: int, tag: str) -> float:
    """``instances.create`` calls per second with IN_FLIGHT of them under way at a time."""
    names = iter(range(calls))

    async def caller() -> None:
        for i in names:
            await gw.call(INSTANCES_CREATE, CreateInstanceParams(name=f"{tag}{i}"))

    t0 = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(IN_FLIGHT)))
    return calls / (time.perf_counter() - t0)


@contextlib.contextmanager
def _stack(root: Path, audit: bool) -> Iterator[tuple[FleetUp, str]]:
    """A `fleet up` recording (or not) on servers of its own, and its NATS URL."""
    with servers(root) as (ns, valkey):
        env = {"FLEET_AUDIT_ENABLED": "true" if audit else "false"}
        with FleetUp(root, ns.url, valkey.url, extra_env=env) as up:
            yield up, ns.url


async def run(report: Report, quick: bool) -> None:
    machines, calls = (5, 200) if quick else (15, 1000)
    print(f"[21] audit log: {machines} machines and {calls} calls per stack, off and on")
    ready: dict[str, list[float]] = {m: [] for m in MODES}
    latency: dict[str, list[float]] = {m: [] for m in MODES}
    rates: dict[str, list[float]] = {m: [] for m in MODES}
    with temp_dir() as root, _stack(root / "off", False) as off, _stack(root / "on", True) as on:
        ups = {"off": off, "on": on}
        gws = {m: Gateway(ups[m][0].url) for m in MODES}
        watches = {m: await EventWatch().start(ups[m][1]) for m in MODES}
        try:
            for m in MODES:  # warm each stack: its first machine and calls are not measured
                inst = await gws[m].call(INSTANCES_CREATE, CreateInstanceParams(name="warm"))
                await _one(gws[m], watches[m], inst.id)
            for i in range(machines):
                for m in MODES if i % 2 == 0 else MODES[::-1]:
                    inst = await gws[m].call(INSTANCES_CREATE, CreateInstanceParams(name=f"m{i}"))
                    ready[m].append((await _one(gws[m], watches[m], inst.id))["ready"])
            for i in range(calls):
                for m in MODES if i % 2 == 0 else MODES[::-1]:
                    t0 = time.perf_counter()
                    await gws[m].call(INSTANCES_CREATE, CreateInstanceParams(name=f"c{i}"))
                    latency[m].append(time.perf_counter() - t0)
            for i in range(3):
                for m in MODES if i % 2 == 0 else MODES[::-1]:
                    rates[m].append(await _rate(gws[m], 4 * calls, f"r{i}-"))
        finally:
            for m in MODES:
                await watches[m].close()
                await gws[m].close()
    r_on, r_off = percentile(ready["on"], 50), percentile(ready["off"], 50)
    report.add(Figure("21", "create-to-ready p50, auditing on", r_on, "s", r_off,
                      "auditing off", "<= 1.05x", r_on <= 1.05 * r_off))  # fmt: skip
    c_on, c_off = percentile(latency["on"], 50), percentile(latency["off"], 50)
    report.add(Figure("21", "gateway call p50 (instances.create), auditing on", c_on, "s",
                      c_off, "auditing off"))  # fmt: skip
    c99_on, c99_off = percentile(latency["on"], 99), percentile(latency["off"], 99)
    report.add(Figure("21", "gateway call p99 (instances.create), auditing on", c99_on, "s",
                      c99_off, "auditing off"))  # fmt: skip
    t_on, t_off = median(rates["on"]), median(rates["off"])
    report.add(Figure("21", f"gateway calls/s (instances.create), {IN_FLIGHT} in flight, "
                      "auditing on", t_on, "calls/s", t_off, "auditing off"))  # fmt: skip
