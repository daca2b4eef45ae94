"""Prometheus metrics: one ``Metrics`` per process, injected where work is done, scraped over HTTP.

- ``fleet_events_handled_total{stage,outcome}``: events a stage consumer handled; ``outcome`` is
  one of ``EVENT_OUTCOMES``: ``ok``, ``error`` (will be retried), ``deferred`` (came too early,
  redelivered later), ``gave_up`` (the machine was failed), ``poison`` (undecodable, or not of
  the consumer's event class; terminated), ``forged`` (kind or machine id differ from the
  subject's: a machine speaking about another; terminated) or ``cancelled`` (a stop
  interrupted it; redelivered);
- ``fleet_stage_seconds{stage}``: how long a stage's handler ran, whatever its outcome;
- ``fleet_daemon_rpc_seconds{method,outcome}``: platform-to-daemon RPC latency; ``outcome`` is
  ``ok``, the error's class name (``DaemonTimeout``, ``ToolError``, ...) or ``error``;
- ``fleet_machines{status}``: machines by status, counted in Redis at scrape time (only where
  ``count_machines`` was called: the gateway, so that the series exists once per deployment).

Two rules keep dashboards honest. Every labelled series a query reads **starts at 0**, so a
failure-rate query answers 0, not nothing, and ``rate()`` sees the first failure: a stage's
outcomes exist from the moment its consumer is built; a daemon method's outcomes from the start
where the process declares the methods it calls (each stage's ``daemon_methods``), else from
the method's first call (the gateway, which may call any of them). And **no empty family**: a
family is registered only in a process that uses it (the gateway has no stage consumer; the
auth callout neither consumers nor daemon calls).

Each Metrics has its own ``CollectorRegistry`` rather than the library's global one: the tests
run every service in one process, and a process-wide registry would refuse the second copy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

import redis.exceptions
import structlog
from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Metric,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from contracts.errors import DaemonTimeout, DaemonUnavailable, FleetError
from contracts.models import Machine, MachineSample
from controlplane.settings import Settings
from controlplane.store import Store

log = structlog.get_logger(__name__)

#: Stages range from a Redis write (ms) to a clone of a big repository (minutes).
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
#: Most daemon calls answer in milliseconds; execCommand runs as long as its command.
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120)
#: Every outcome a stage consumer counts (``Consumer``), each at 0 from the start.
EVENT_OUTCOMES = ("ok", "error", "deferred", "gave_up", "poison", "forged", "cancelled")
#: The outcomes of any daemon call, at 0 from a method's first call; the method's own declared
#: errors (``MethodSpec.errors``) are added by the caller.
RPC_OUTCOMES = ("ok", DaemonUnavailable.__name__, DaemonTimeout.__name__, "error", "cancelled")


class _MachineCounts(Collector):
    """``fleet_machines{status}`` from the last refresh; nothing at all (not an empty family)
    before the first one or while Redis cannot be read."""

    def __init__(self) -> None:
        self.counts: dict[str, int] | None = None

    def collect(self) -> Iterator[Metric]:
        if self.counts is None:
            return
        family = GaugeMetricFamily(
            "fleet_machines", "Machines by status (counted at scrape time).", labels=["status"]
        )
        for status, n in sorted(self.counts.items()):
            family.add_metric([status], n)
        yield family


#: ``fleet_machine_*{machine_id,instance_id}``: each machine's latest sample
#: (contracts.models.MachineSample's field, and how a value is had from it).
MACHINE_GAUGES: tuple[tuple[str, str, Callable[[MachineSample], float | None]], ...] = (
    ("fleet_machine_cpu_cores", "CPU cores the machine used (its latest sample).",
     lambda s: s.cpu_cores),
    ("fleet_machine_memory_bytes", "Memory the machine uses.", lambda s: s.memory_bytes),
    ("fleet_machine_memory_limit_bytes", "The machine's memory limit.",
     lambda s: s.memory_limit_bytes),
    ("fleet_machine_disk_bytes", "What the machine's home takes on disk.", lambda s: s.disk_bytes),
    ("fleet_machine_disk_limit_bytes", "The size of the file system of the machine's home.",
     lambda s: s.disk_limit_bytes),
    ("fleet_machine_network_receive_bytes_per_second", "Bytes the machine received a second.",
     lambda s: None if s.net_in_bytes is None else s.net_in_bytes / s.step_s),
    ("fleet_machine_network_transmit_bytes_per_second", "Bytes the machine sent a second.",
     lambda s: None if s.net_out_bytes is None else s.net_out_bytes / s.step_s),
)  # fmt: skip
#: A machine whose latest sample is older than this has no series (it stopped, or paused).
MACHINE_SAMPLE_FRESH_S = 60.0


class _MachineGauges(Collector):
    """``MACHINE_GAUGES`` of each machine sampled in the last minute, from the last refresh."""

    def __init__(self) -> None:
        self.samples: list[tuple[str, str, MachineSample]] = []

    def collect(self) -> Iterator[Metric]:
        for name, doc, value in MACHINE_GAUGES:
            family = GaugeMetricFamily(name, doc, labels=["machine_id", "instance_id"])
            for mid, instance_id, sample in self.samples:
                got = value(sample)
                if got is not None:
                    family.add_metric([mid, instance_id], got)
            if family.samples:  # no empty family
                yield family


class Metrics:
    def __init__(self, *, process: bool = False) -> None:
        """``process``: also export the process's CPU, memory and file descriptors (the
        standard ``process_*`` series), as a service's own metrics endpoint should."""
        self.registry = CollectorRegistry()
        # Created unregistered: each is registered by the first use that needs it (see above).
        self.events = Counter(
            "fleet_events_handled", "Events handled by a stage consumer, by outcome.",
            ["stage", "outcome"], registry=None,
        )  # fmt: skip
        self.stage_seconds = Histogram(
            "fleet_stage_seconds", "Time a stage's handler took for one event.",
            ["stage"], buckets=STAGE_BUCKETS, registry=None,
        )  # fmt: skip
        self.daemon_rpc_seconds = Histogram(
            "fleet_daemon_rpc_seconds", "Platform-to-daemon JSON-RPC latency.",
            ["method", "outcome"], buckets=RPC_BUCKETS, registry=None,
        )  # fmt: skip
        if process:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        self._registered: set[int] = set()
        self._machine_counts = _MachineCounts()
        self._machine_store: Store | None = None
        self._machine_gauges = _MachineGauges()
        self._gauges_store: Store | None = None
        self._stages: set[str] = set()
        self._rpc_children: dict[tuple[str, str], Any] = {}

    def use(self, collector: Collector) -> None:
        """Register ``collector`` in this process's registry, once."""
        if id(collector) not in self._registered:
            self._registered.add(id(collector))
            self.registry.register(collector)

    def count_machines(self, store: Store) -> None:
        """Export ``fleet_machines``, counted from ``store`` at every scrape."""
        self._machine_store = store
        self.use(self._machine_counts)

    def per_machine(self, store: Store) -> None:
        """Export ``MACHINE_GAUGES`` of every machine sampled lately, read from ``store`` at
        every scrape (``FLEET_METRICS_PER_MACHINE``: a series per machine)."""
        self._gauges_store = store
        self.use(self._machine_gauges)

    def declare_stage(self, stage: str) -> None:
        """A stage consumer exists: its outcome series and its histogram start at 0."""
        if stage in self._stages:
            return
        self._stages.add(stage)
        self.use(self.events)
        self.use(self.stage_seconds)
        for outcome in EVENT_OUTCOMES:
            self.events.labels(stage, outcome)
        self.stage_seconds.labels(stage)

    def event_handled(self, stage: str, outcome: str, seconds: float | None = None) -> None:
        self.declare_stage(stage)
        self.events.labels(stage, outcome).inc()
        if seconds is not None:
            self.stage_seconds.labels(stage).observe(seconds)

    def observe_rpc(
        self,
        method: str,
        outcome: str,
        seconds: float,
        errors: tuple[type[FleetError], ...] = (),
    ) -> None:
        """One daemon call's latency. The labelled child is cached: ``labels()`` per call
        cost 2% of a client's time at 64 calls in flight (bench 1). A method's first call
        creates its series for every outcome it may have (``RPC_OUTCOMES`` and ``errors``)."""
        child = self._rpc_children.get((method, outcome))
        if child is None:
            self.declare_rpc(method, errors, outcome)
            child = self._rpc_children[(method, outcome)]
        child.observe(seconds)

    def declare_rpc(
        self, method: str, errors: tuple[type[FleetError], ...] = (), *more: str
    ) -> None:
        """A daemon method this process calls: its series for every outcome start at 0."""
        self.use(self.daemon_rpc_seconds)
        for known in (*RPC_OUTCOMES, *(e.__name__ for e in errors), *more):
            if (method, known) not in self._rpc_children:
                self._rpc_children[(method, known)] = self.daemon_rpc_seconds.labels(method, known)

    async def refresh(self) -> None:
        """Bring the scrape-time gauges up to date."""
        if self._gauges_store is not None:
            await self._refresh_machines(self._gauges_store)
        if self._machine_store is None:
            return
        try:
            self._machine_counts.counts = await self._machine_store.machines_by_status()
        except (redis.exceptions.RedisError, OSError) as exc:
            # No numbers rather than stale ones: the series disappears until Redis is back.
            log.warning("metrics.count_machines_failed", error=repr(exc))
            self._machine_counts.counts = None

    async def _refresh_machines(self, store: Store) -> None:
        after = time.time() - MACHINE_SAMPLE_FRESH_S
        try:
            ids = await store.metrics.sampled_since(after)
            latest = await store.metrics.latest(ids, after)
            machines = await asyncio.gather(*(store.get_machine(m) for m in latest),
                                            return_exceptions=True)  # fmt: skip
        except (redis.exceptions.RedisError, OSError) as exc:
            log.warning("metrics.machine_samples_failed", error=repr(exc))
            self._machine_gauges.samples = []
            return
        self._machine_gauges.samples = [(m.id, m.instance_id, latest[m.id]) for m in machines
                                        if isinstance(m, Machine)]  # fmt: skip

    async def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The scrape body and its content type, in the format the scraper asked for."""
        await self.refresh()
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def rpc_outcome(exc: Exception) -> str:
    """The ``outcome`` label of a failed call: the error's kind, or just "error"."""
    return type(exc).__name__ if isinstance(exc, FleetError) else "error"


async def metrics_handler(metrics: Metrics, request: web.Request) -> web.Response:
    body, content_type = await metrics.exposition(request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


def metrics_app(metrics: Metrics) -> web.Application:
    app = web.Application()

    async def handle(request: web.Request) -> web.Response:
        return await metrics_handler(metrics, request)

    app.router.add_get("/metrics", handle)
    return app


class MetricsServer:
    """``GET /metrics`` on host:port, for a service that has no HTTP server of its own; port 0:
    one the kernel gives, in ``port`` once entered (and logged)."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self._runner = web.AppRunner(metrics_app(metrics), access_log=None)
        self._host = host
        self.port = port

    async def __aenter__(self) -> MetricsServer:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            raise
        self.port = site.port
        log.info("metrics.listening", url=f"http://{self._host}:{self.port}/metrics")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


async def service_metrics(settings: Settings, stack: AsyncExitStack) -> Metrics:
    """The process's Metrics, served on ``FLEET_METRICS_PORT`` when that is set (not 0)."""
    metrics = Metrics(process=True)
    if settings.metrics_port:
        await stack.enter_async_context(
            MetricsServer(metrics, settings.metrics_host, settings.metrics_port)
        )
    return metrics
