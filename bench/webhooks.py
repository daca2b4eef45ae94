"""Benchmark 33: webhook delivery latency against the event stream's (SSE), for the same
events in the same run. A `fleet up` (its webhooks service as it runs, allowed to reach this
host's loopback) with a platform webhook of every type to a receiver in this process, and an
SSE stream of every machine's events (``GET /events``) held open beside it; machine events
are published into the stream at a steady rate (``env-pushed``, which no stage handles, for
ten machines in turn: ten queues), and each one's latency is its arrival (at the receiver,
or on the SSE stream) less the moment before its publish. Target: webhook p50 and p99 within
2x of the SSE's."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import nats
from aiohttp import web

from bench.common import Figure, Report, percentile, serving, temp_dir
from bench.stack import ADMIN_TOKEN, FleetUp, Gateway, servers
from contracts.bus.events import EnvPushed, encode_event, subject_of
from contracts.gateway.webhooks import WEBHOOKS_CREATE, CreateWebhookParams
from contracts.ids import new_event_id

RATE = 100.0
MACHINES = [f"m-{n:016x}" for n in range(0xBE0, 0xBE0 + 10)]
#: Events sent before the measured ones: the first of each queue, the SSE's first, warm-up.
WARM = 50


class _Id(msgspec.Struct):
    event_id: str = msgspec.field(name="eventId")


class Envelope(msgspec.Struct):
    data: _Id


@contextlib.asynccontextmanager
async def _receiver(arrived: dict[str, float]) -> AsyncIterator[str]:
    decode = msgspec.json.Decoder(Envelope).decode

    async def hook(request: web.Request) -> web.Response:
        event_id = decode(await request.read()).data.event_id
        arrived.setdefault(event_id, time.perf_counter())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with serving(app) as url:
        yield f"{url}/hook"


async def _sse(url: str, arrived: dict[str, float], connected: asyncio.Event) -> None:
    decode = msgspec.json.Decoder(_Id).decode
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"{url}/events", headers=headers) as resp,
    ):
        async for line in resp.content:
            if line.startswith(b"event: caught-up"):
                connected.set()
            elif line.startswith(b'data: {"type"'):
                arrived.setdefault(decode(line[6:]).event_id, time.perf_counter())


async def publish(nats_url: str, count: int, sent: dict[str, float]) -> None:
    nc = await nats.connect(nats_url, name="bench-webhooks")
    js = nc.jetstream()
    try:
        start = time.perf_counter()
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / RATE - time.perf_counter()))
            event = EnvPushed(event_id=new_event_id(), machine_id=MACHINES[i % len(MACHINES)],
                              env_path="/home/fleet/.fleet/.env", env_bytes=64,
                              env_sha256="0" * 64)  # fmt: skip
            sent[event.event_id] = time.perf_counter()
            await js.publish(subject_of(event), encode_event(event),
                             headers={"Nats-Msg-Id": event.event_id})  # fmt: skip
    finally:
        await nc.close()


async def until(arrived: dict[str, float], wanted: set[str], timeout_s: float) -> None:
    """Until every one of ``wanted`` arrived, or ``timeout_s`` passed (then the figure says how
    many did not)."""

    async def every() -> None:
        while not wanted <= arrived.keys():  # noqa: ASYNC110 - polled: two sources fill it
            await asyncio.sleep(0.1)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(every(), timeout_s)


async def run(report: Report, quick: bool) -> None:
    seconds = 10 if quick else 30
    count = int(RATE * seconds)
    print(f"[33] webhooks: {count} events at {RATE:g}/s, webhook and SSE latency")
    hooked: dict[str, float] = {}
    streamed: dict[str, float] = {}
    sent: dict[str, float] = {}
    with temp_dir() as root:
        root_path = Path(root)
        with servers(root_path) as (ns, valkey):
            env = {"FLEET_WEBHOOK_ALLOW_PRIVATE": "127.0.0.1/32"}
            with FleetUp(root_path, ns.url, valkey.url, extra_env=env) as up:
                async with _receiver(hooked) as hook_url:
                    gw = Gateway(up.url)
                    try:
                        await gw.call(
                            WEBHOOKS_CREATE, CreateWebhookParams(url=hook_url, events=["*"])
                        )
                    finally:
                        await gw.close()
                    connected = asyncio.Event()
                    sse = asyncio.create_task(_sse(up.url, streamed, connected))
                    try:
                        await asyncio.wait_for(connected.wait(), 30)
                        await publish(ns.url, WARM + count, sent)
                        await until(hooked, set(sent), 60)
                        await until(streamed, set(sent), 10)
                    finally:
                        sse.cancel()
                        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
                            await sse
    measured = list(sent)[WARM:]
    lost = [e for e in measured if e not in hooked or e not in streamed]
    hook = [hooked[e] - sent[e] for e in measured if e in hooked]
    stream = [streamed[e] - sent[e] for e in measured if e in streamed]
    if lost:
        report.note(f"33: {len(lost)} of {len(measured)} events did not arrive both ways")
    for p in (50, 99):
        h, s = percentile(hook, p), percentile(stream, p)
        report.add(Figure("33", f"webhook delivery p{p} at {RATE:g} events/s", h, "s", s,
                          f"SSE p{p}", "<= 2x", h <= 2 * s))  # fmt: skip
