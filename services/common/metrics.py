"""Prometheus metrics: one ``Metrics`` per process, injected where work is done, scraped over HTTP.

- ``fleet_events_handled_total{stage,outcome}``: events a stage consumer handled; ``outcome`` is
  ``ok``, ``error`` (will be retried), ``deferred`` (came too early, redelivered later),
  ``gave_up`` (the machine was failed), ``poison`` (undecodable, or not of the consumer's
  event class; terminated) or ``forged`` (kind or machine id differ from the subject's: a
  machine speaking about another; terminated);
- ``fleet_stage_seconds{stage}``: how long a stage's handler ran, whatever its outcome;
- ``fleet_daemon_rpc_seconds{method,outcome}``: platform-to-daemon RPC latency; ``outcome`` is
  ``ok``, the error's class name (``DaemonTimeout``, ``ToolError``, ...) or ``error``;
- ``fleet_machines{status}``: machines by status, counted in Redis at scrape time (only where
  ``count_machines`` was called: the gateway, so that the series exists once per deployment).

Each Metrics has its own ``CollectorRegistry`` rather than the library's global one: the tests
run every service in one process, and a process-wide registry would refuse the second copy.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import redis.exceptions
import structlog
from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder

from contracts.errors import FleetError
from services.common.settings import Settings
from services.common.store import Store

log = structlog.get_logger(__name__)

#: Stages range from a Redis write (ms) to a clone of a big repository (minutes).
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
#: Most daemon calls answer in milliseconds; execCommand runs as long as its command.
RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120)


class Metrics:
    def __init__(self, *, process: bool = False) -> None:
        """``process``: also export the process's CPU, memory and file descriptors (the
        standard ``process_*`` series), as a service's own metrics endpoint should."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.events = Counter(
            "fleet_events_handled", "Events handled by a stage consumer, by outcome.",
            ["stage", "outcome"], registry=r,
        )  # fmt: skip
        self.stage_seconds = Histogram(
            "fleet_stage_seconds", "Time a stage's handler took for one event.",
            ["stage"], buckets=STAGE_BUCKETS, registry=r,
        )  # fmt: skip
        self.daemon_rpc_seconds = Histogram(
            "fleet_daemon_rpc_seconds", "Platform-to-daemon JSON-RPC latency.",
            ["method", "outcome"], buckets=RPC_BUCKETS, registry=r,
        )  # fmt: skip
        self.machines = Gauge(
            "fleet_machines", "Machines by status (counted at scrape time).", ["status"],
            registry=r,
        )  # fmt: skip
        if process:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        self._machine_store: Store | None = None
        self._rpc_children: dict[tuple[str, str], Any] = {}

    def count_machines(self, store: Store) -> None:
        """Export ``fleet_machines``, counted from ``store`` at every scrape."""
        self._machine_store = store

    def event_handled(self, stage: str, outcome: str, seconds: float | None = None) -> None:
        self.events.labels(stage, outcome).inc()
        if seconds is not None:
            self.stage_seconds.labels(stage).observe(seconds)

    def observe_rpc(self, method: str, outcome: str, seconds: float) -> None:
        """One daemon call's latency. The labelled child is cached: ``labels()`` per call
        cost 2% of a client's time at 64 calls in flight (bench 1)."""
        child = self._rpc_children.get((method, outcome))
        if child is None:
            child = self._rpc_children[(method, outcome)] = self.daemon_rpc_seconds.labels(
                method, outcome
            )
        child.observe(seconds)

    async def refresh(self) -> None:
        """Bring the scrape-time gauges up to date."""
        if self._machine_store is None:
            return
        try:
            counts = await self._machine_store.machines_by_status()
        except (redis.exceptions.RedisError, OSError) as exc:
            # No numbers rather than stale ones: the series disappears until Redis is back.
            log.warning("metrics.count_machines_failed", error=repr(exc))
            self.machines.clear()
            return
        for status, n in counts.items():
            self.machines.labels(status).set(n)

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
    """``GET /metrics`` on host:port, for a service that has no HTTP server of its own."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        self._runner = web.AppRunner(metrics_app(metrics), access_log=None)
        self._host = host
        self._port = port

    async def __aenter__(self) -> MetricsServer:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            raise
        log.info("metrics.listening", url=f"http://{self._host}:{self._port}/metrics")
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
