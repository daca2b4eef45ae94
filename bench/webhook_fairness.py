"""Benchmark 35: one tenant's slow webhook endpoints against another's deliveries, in the same
run. A `fleet up` (its webhooks service as it runs, allowed to reach this host's loopback, an
attempt's timeout of 2 s) with a victim endpoint (the platform's, of every type) at a receiver
that answers at once; machine events are published into the stream as benchmark 33 does, and
each one's latency is its arrival less the moment before its publish. First alone (the
baseline), then while 80 slow endpoints (4 instances of 20, each at a receiver that answers
2xx after 1.8 s, just inside the timeout) are kept fed with ``webhooks.test`` events, more than
each can take. Target: the victim's p50 under that load within 2x of its p50 alone."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
from aiohttp import web

from bench.common import Figure, Report, percentile, serving, temp_dir
from bench.stack import FleetUp, Gateway, servers
from bench.webhooks import Envelope as _Envelope, publish, until
from contracts.gateway.rpc import INSTANCES_CREATE
from contracts.gateway.types import CreateInstanceParams
from contracts.gateway.webhooks import (
    WEBHOOKS_CREATE,
    WEBHOOKS_TEST,
    CreateWebhookParams,
    WebhookRef,
)

SLOW_INSTANCES = 4
SLOW_PER_INSTANCE = 20
SLOW_ANSWER_S = 1.8
SAMPLES = 40
#: Tests queued for each slow endpoint: more than it takes in the run (one per 1.8 s).
FEED = 60


@contextlib.asynccontextmanager
async def _receivers(arrived: dict[str, float]) -> AsyncIterator[str]:
    """``/victim`` answers at once (its arrivals kept by event id), ``/slow/N`` after
    ``SLOW_ANSWER_S``; the base URL."""
    decode = msgspec.json.Decoder(_Envelope).decode

    async def victim(request: web.Request) -> web.Response:
        arrived.setdefault(decode(await request.read()).data.event_id, time.perf_counter())
        return web.Response(status=204)

    async def slow(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(SLOW_ANSWER_S)
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/victim", victim)
    app.router.add_post("/slow/{n}", slow)
    async with serving(app) as url:
        yield url


async def _victim(nats_url: str, arrived: dict[str, float]) -> list[float]:
    """``SAMPLES`` events published at benchmark 33's rate: each one's latency."""
    sent: dict[str, float] = {}
    await publish(nats_url, SAMPLES, sent)
    await until(arrived, set(sent), 60)
    return [arrived[e] - sent[e] for e in sent if e in arrived]


async def _endpoints(gw: Gateway, name: str, urls: list[str]) -> list[str]:
    """A new instance's endpoints at ``urls``."""
    inst = await gw.call(INSTANCES_CREATE, CreateInstanceParams(name=name))
    made = await gw.batch(WEBHOOKS_CREATE, [CreateWebhookParams(
        instance_id=inst.id, url=url, events=["*"]) for url in urls])  # fmt: skip
    return [m.id for m in made]


async def run(report: Report, quick: bool) -> None:
    print(f"[35] webhook fairness: a victim's delivery beside {SLOW_INSTANCES * SLOW_PER_INSTANCE}"
          " slow endpoints")  # fmt: skip
    arrived: dict[str, float] = {}
    with temp_dir() as root:
        root_path = Path(root)
        with servers(root_path) as (ns, valkey):
            env = {"FLEET_WEBHOOK_ALLOW_PRIVATE": "127.0.0.1/32", "FLEET_WEBHOOK_TIMEOUT_S": "2"}
            with FleetUp(root_path, ns.url, valkey.url, extra_env=env) as up:
                async with _receivers(arrived) as base:
                    gw = Gateway(up.url)
                    try:
                        await gw.call(WEBHOOKS_CREATE, CreateWebhookParams(
                            url=f"{base}/victim", events=["*"]))  # fmt: skip
                        alone = await _victim(ns.url, arrived)
                        slow = []
                        for i in range(SLOW_INSTANCES):
                            slow += await _endpoints(
                                gw,
                                f"slow-{i}",
                                [f"{base}/slow/{i}-{n}" for n in range(SLOW_PER_INSTANCE)],
                            )
                        for _ in range(FEED):
                            await gw.batch(WEBHOOKS_TEST, [WebhookRef(webhook_id=w)
                                                           for w in slow])  # fmt: skip
                        loaded = await _victim(ns.url, arrived)
                    finally:
                        await gw.close()
    if len(loaded) < SAMPLES:  # the ones that never came count as the whole wait
        report.note(f"35: {SAMPLES - len(loaded)} of {SAMPLES} events did not arrive in 60 s")
        loaded += [60.0] * (SAMPLES - len(loaded))
    a, b = percentile(alone, 50), percentile(loaded, 50)
    report.add(Figure("35", f"a victim's webhook p50 beside {len(slow)} slow endpoints fed", b,
                      "s", a, "its p50 alone", "<= 2x", b <= 2 * a))  # fmt: skip
