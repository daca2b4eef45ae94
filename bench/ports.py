"""Benchmark 16: a machine's ports through ``fleet machines forward`` and the preview URL,
against the same servers reached directly on the loopback, in the same run.

On the embedded stack (``fleet up``) with one local machine running two servers of
``tests/machine_servers.py``: ``http`` (a small page; ``/big?n=N``) and ``source`` (N bytes
down a raw TCP connection). The direct baseline is a second copy of each server on this host's
loopback, so the program is the same and only the path differs:

- TCP download MiB/s: direct, and through ``forward`` (socket -> WebSocket -> gateway ->
  byte stream -> daemon -> socket);
- HTTP GET of ``/big`` MiB/s through the preview URL, against ``/big`` direct;
- HTTP request p50 of the small page: direct, through ``forward`` (a kept-alive connection: one
  tunnel), through the preview URL (a tunnel per request: the tunnel's open is in each).

No target: the tunnel's floor is the raw nats-py hop (benchmark 14); these figures say what a
user pays for the gateway and the stream on top of the loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp

from bench.common import Figure, Report, percentile, temp_dir
from bench.stack import ADMIN_TOKEN, EventWatch, FleetUp, servers
from fleet.client import FleetClient

SERVERS = Path(__file__).resolve().parents[1] / "tests" / "machine_servers.py"
MiB = 1024 * 1024


async def tcp_download(port: int, total: int) -> float:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.perf_counter()
    writer.write(f"{total}\n".encode())
    got = 0
    while chunk := await reader.read(256 * 1024):
        got += len(chunk)
    elapsed = time.perf_counter() - t0
    writer.close()
    assert got == total, (got, total)
    return total / MiB / elapsed


async def http_download(session: aiohttp.ClientSession, url: str, total: int) -> float:
    t0 = time.perf_counter()
    async with session.get(f"{url}big?n={total}") as r:
        got = 0
        async for chunk in r.content.iter_any():
            got += len(chunk)
    assert got == total, (got, total)
    return total / MiB / (time.perf_counter() - t0)


async def http_p50(session: aiohttp.ClientSession, url: str, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with session.get(url) as r:
            await r.read()
            assert r.status == 200, r.status
        times.append(time.perf_counter() - t0)
    return percentile(times, 50)


@contextlib.asynccontextmanager
async def forward(up: FleetUp, machine_id: str, port: int) -> AsyncIterator[int]:
    env = {**os.environ, "FLEET_URL": up.url, "FLEET_TOKEN": ADMIN_TOKEN}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from fleet.cli import main; main()", "machines", "forward",
        machine_id, f"0:{port}",
        env=env, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        yield int(line.split()[1].split(":")[1])
    finally:
        proc.kill()
        await proc.wait()


async def _machine(client: FleetClient, ns_url: str) -> tuple[str, int, int]:
    watch = await EventWatch().start(ns_url)
    try:
        inst = await client.create_instance("bench-ports")
        machine = await client.create_machine(inst.id)
        await watch.wait_all("ready", [machine.id], timeout_s=180)  # a loaded host
    finally:
        await watch.close()
    await client.write_file(machine.id, "servers.py", SERVERS.read_text())
    for mode in ("http", "source"):
        await client.start_process(machine.id, ["python3", "servers.py", mode], tag=mode)
    async with asyncio.timeout(30):
        while True:  # no event says a program started listening: ask the machine again
            http, source = [await _said_port(client, machine.id, m) for m in ("http", "source")]
            if http and source:
                return machine.id, http, source
            await asyncio.sleep(0.1)


async def _said_port(client: FleetClient, machine_id: str, tag: str) -> int:
    """The port the machine's server ``tag`` says it listens on (0: not yet)."""
    lines = (await client.process_logs(machine_id, tag=tag)).lines
    return next((int(line.split()[1]) for line in lines if line.startswith("listening ")), 0)


@contextlib.contextmanager
def on_host(mode: str) -> Iterator[int]:
    """The server ``mode`` on this host, listening: the port it says it bound."""
    proc = subprocess.Popen([sys.executable, str(SERVERS), mode], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        said = proc.stdout.readline().decode()  # "listening <port>" once it listens
        if not said.startswith("listening "):
            raise RuntimeError(f"{mode} on the host did not listen: {said!r}")
        yield int(said.split()[1])
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


async def run(report: Report, quick: bool) -> None:
    total = (32 if quick else 128) * MiB
    n = 30 if quick else 200
    rounds = 2 if quick else 3
    print(f"[16] ports: {total // MiB} MiB downloads (best of {rounds}), {n} requests per p50")
    with temp_dir() as root, servers(root) as (ns, valkey), FleetUp(root, ns.url, valkey.url) as up:
        async with FleetClient(up.url, ADMIN_TOKEN) as client:
            mid, http, source = await _machine(client, ns.url)
        with on_host("http") as d_http, on_host("source") as d_source:
            async with forward(up, mid, source) as f_source, forward(up, mid, http) as f_http:
                await _measure(report, up, mid, total, n, rounds,
                               (d_http, d_source, f_http, f_source, http))  # fmt: skip


async def _measure(report: Report, up: FleetUp, mid: str, total: int, n: int, rounds: int,
                   ports: tuple[int, int, int, int, int]) -> None:  # fmt: skip
    d_http, d_source, f_http, f_source, http = ports
    direct_url, fwd_url = f"http://127.0.0.1:{d_http}/", f"http://127.0.0.1:{f_http}/"
    preview_url = f"{up.previews}/machines/{mid}/ports/{http}/"
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    tcp = {"direct": 0.0, "forward": 0.0}
    dl = {"direct": 0.0, "preview": 0.0}
    async with aiohttp.ClientSession() as plain, aiohttp.ClientSession(headers=auth) as authed:
        for _ in range(rounds):  # interleaved, so load on the shared host hits all
            tcp["direct"] = max(tcp["direct"], await tcp_download(d_source, total))
            tcp["forward"] = max(tcp["forward"], await tcp_download(f_source, total))
            dl["direct"] = max(dl["direct"], await http_download(plain, direct_url, total))
            dl["preview"] = max(dl["preview"], await http_download(authed, preview_url, total))
        p50 = {
            "direct": await http_p50(plain, direct_url, n),
            "forward": await http_p50(plain, fwd_url, n),
            "preview": await http_p50(authed, preview_url, n),
        }
    report.add(Figure("16", "TCP download through forward", tcp["forward"], "MiB/s",
                      tcp["direct"], "direct loopback"))  # fmt: skip
    report.add(Figure("16", "HTTP download through the preview URL", dl["preview"], "MiB/s",
                      dl["direct"], "direct loopback"))  # fmt: skip
    for path in ("forward", "preview"):
        report.add(Figure("16", f"HTTP request p50 through {path}", p50[path], "s",
                          p50["direct"], "direct loopback p50"))  # fmt: skip
