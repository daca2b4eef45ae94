"""Benchmark 14: byte-stream throughput against the raw nats-py hop, the byte streams' floor.

The floor: one raw nats-py hop between two connections of this process, the sender keeping at
most 8 chunks in flight and the receiver acknowledging each chunk on a second subject (the
credit window, with no framing, no sequence check, no buffer). Against it, at 64 KiB, 256 KiB
(terminals, tunnels) and 512 KiB chunks (file transfers): two ``ByteStream`` endpoints over
the same two connections (window 8 chunks), and a real daemon process streaming ``head -c N
/dev/zero`` through ``tool.execPipe`` to the platform's endpoint. Target: the endpoints keep at
least 0.6x of the floor.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from base.byte_stream import ByteStream
from bench.common import Figure, Report, temp_dir
from bench.daemons import bench_token, daemon_env, kill_group, spawn, token_keys
from bench.stack import servers
from contracts.daemon import rpc as d
from contracts.daemon.files import FILE_CHUNK
from contracts.errors import DaemonUnavailable
from contracts.ids import new_machine_id
from controlplane.calls.byte_stream_join import join
from controlplane.calls.daemon_client import DaemonClient
from providers.local import daemon_argv

MiB = 1024 * 1024
IN_FLIGHT = 8
CHUNKS = (64 * 1024, 256 * 1024, FILE_CHUNK)


async def raw_hop(tx: NATS, rx: NATS, chunk: int, total: int) -> float:
    """MiB/s of the bare hop: publish, count, ack; at most IN_FLIGHT chunks unacked."""
    n = total // chunk
    acked = 0
    room = asyncio.Event()
    done = asyncio.Event()
    got = 0

    async def on_data(msg: Msg) -> None:
        nonlocal got
        got += 1
        await rx.publish("bench.hop.ack", b"")
        if got == n:
            done.set()

    async def on_ack(_: Msg) -> None:
        nonlocal acked
        acked += 1
        room.set()

    subs = [await rx.subscribe("bench.hop.data", cb=on_data),
            await tx.subscribe("bench.hop.ack", cb=on_ack)]  # fmt: skip
    await rx.flush()
    await tx.flush()
    payload = bytes(chunk)
    t0 = time.perf_counter()
    for sent in range(n):
        while sent - acked >= IN_FLIGHT:
            room.clear()
            await room.wait()
        await tx.publish("bench.hop.data", payload)
    await done.wait()
    elapsed = time.perf_counter() - t0
    for sub in subs:
        await sub.unsubscribe()
    return total / MiB / elapsed


async def endpoints(tx: NATS, rx: NATS, chunk: int, total: int) -> float:
    """MiB/s through two ByteStream endpoints, one per connection."""
    window = IN_FLIGHT * chunk
    sender: ByteStream
    receiver: ByteStream

    async def to_rx(frame: bytes) -> None:
        await tx.publish("bench.bs.down", frame)

    async def to_tx(frame: bytes) -> None:
        await rx.publish("bench.bs.up", frame)

    sender = ByteStream("0" * 32, to_rx, window=window, chunk_size=chunk)
    receiver = ByteStream("0" * 32, to_tx, window=window, chunk_size=chunk)

    async def feed_rx(msg: Msg) -> None:
        await receiver.feed(msg.data)

    async def feed_tx(msg: Msg) -> None:
        await sender.feed(msg.data)

    subs = [await rx.subscribe("bench.bs.down", cb=feed_rx),
            await tx.subscribe("bench.bs.up", cb=feed_tx)]  # fmt: skip
    await rx.flush()
    await tx.flush()
    await sender.start()
    await receiver.start()
    payload = bytes(chunk)
    t0 = time.perf_counter()

    async def send() -> None:
        for _ in range(total // chunk):
            await sender.send(payload)
        await sender.end()

    writer = asyncio.create_task(send())
    got = 0
    async for piece in receiver:
        got += len(piece)
    await writer
    elapsed = time.perf_counter() - t0
    assert got == total // chunk * chunk
    for side in (sender, receiver):
        await side.aclose()
    for sub in subs:
        await sub.unsubscribe()
    return got / MiB / elapsed


async def through_daemon(nc: NATS, client: DaemonClient, mid: str, chunk: int,
                         total: int) -> float:  # fmt: skip
    """MiB/s of a real daemon's ``head -c total /dev/zero`` read by the platform's endpoint."""
    params = d.ExecPipeParams(command=["head", "-c", str(total), "/dev/zero"], chunk_size=chunk,
                              window=IN_FLIGHT * chunk)  # fmt: skip
    t0 = time.perf_counter()
    opened = await client.call(mid, d.EXEC_PIPE, params)
    got = 0
    async with await join(nc, mid, opened.stream_id, window=IN_FLIGHT * chunk,
                          chunk_size=chunk) as stream:  # fmt: skip
        await stream.end()
        async for piece in stream:
            got += len(piece)
    assert got == total, (got, total)
    return got / MiB / (time.perf_counter() - t0)


async def _daemon(nats_url: str, root: Path) -> tuple[str, int]:
    mid = new_machine_id()
    home = root / mid
    home.mkdir()
    pid = spawn(daemon_argv(), daemon_env(nats_url, mid, home), root / f"{mid}.log")
    return mid, pid


async def _ready(client: DaemonClient, mid: str) -> None:
    async with asyncio.timeout(30):
        while True:
            with contextlib.suppress(DaemonUnavailable):
                await client.machine(mid).health(timeout_s=2)
                return
            await asyncio.sleep(0.1)


async def run(report: Report, quick: bool) -> None:
    total = (64 if quick else 256) * MiB
    rounds = 2 if quick else 3
    print(f"[14] byte streams: {total // MiB} MiB per run, best of {rounds}, window 8 chunks")
    with temp_dir() as root, servers(root) as (ns, _):
        tx, rx = await nats.connect(ns.url), await nats.connect(ns.url)
        mid, pid = await _daemon(ns.url, root)
        try:
            client = DaemonClient(rx, keys=token_keys({mid: bench_token(mid)}))
            await _ready(client, mid)
            for chunk in CHUNKS:
                floor = ends = daemon = 0.0
                for _ in range(rounds):  # interleaved, so load on the shared host hits all
                    floor = max(floor, await raw_hop(tx, rx, chunk, total))
                    ends = max(ends, await endpoints(tx, rx, chunk, total))
                    daemon = max(daemon, await through_daemon(rx, client, mid, chunk, total))
                _add(report, chunk, "endpoints", ends, floor)
                _add(report, chunk, "daemon head -c", daemon, floor)
        finally:
            kill_group(pid)
            await tx.close()
            await rx.close()


def _add(report: Report, chunk: int, what: str, value: float, floor: float) -> None:
    name = f"stream {what} {chunk // 1024} KiB chunks"
    report.add(Figure("14", name, value, "MiB/s", floor, "raw nats-py hop", ">= 0.6x",
                      met=value >= 0.6 * floor))  # fmt: skip
