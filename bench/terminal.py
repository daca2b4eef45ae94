"""Benchmark 15: interactive sessions through the gateway's WebSocket, against a local PTY.

On the embedded stack with one local machine:
- keystroke echo: one byte typed into a session running ``cat`` and its echo back (the
  terminal's own echo), p50 and p99, through ``GET .../attach``; the floor is the same on a PTY
  of this process. Target: p50 and p99 at most 2x the floor + 2 ms.
- output throughput: a session whose command writes N MiB (``head -c N /dev/zero``) read to its
  end through the WebSocket; the floor is the same command on a local PTY read here.
"""

from __future__ import annotations

import asyncio
import os
import pty
import subprocess
import time

import aiohttp

from bench.common import Figure, Report, percentile, temp_dir
from bench.stack import ADMIN_TOKEN, EventWatch, FleetUp, servers
from fleet.client import FleetClient

MiB = 1024 * 1024


def local_echo(n: int) -> list[float]:
    """Round trips of one byte through a local PTY's echo (``cat`` reading it)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(["cat"], stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)  # fmt: skip
    os.close(slave)
    try:
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(master, b"x")
            os.read(master, 1)
            samples.append(time.perf_counter() - t0)
        return samples
    finally:
        proc.kill()
        proc.wait()
        os.close(master)


def local_output(size: int) -> float:
    """MiB/s of reading ``head -c size /dev/zero`` off a local PTY."""
    master, slave = pty.openpty()
    t0 = time.perf_counter()
    proc = subprocess.Popen(["head", "-c", str(size), "/dev/zero"], stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True)  # fmt: skip
    os.close(slave)
    got = 0
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the command is done and gone
                break
            if not chunk:
                break
            got += len(chunk)
    finally:
        proc.wait()
        os.close(master)
    assert got >= size, (got, size)
    return size / MiB / (time.perf_counter() - t0)


async def remote_echo(client: FleetClient, mid: str, n: int) -> list[float]:
    opened = await client.open_session(mid, ["cat"])
    ws = await client.attach_session(mid, opened.session_id)
    try:
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            await ws.send_bytes(b"x")
            while True:
                msg = await ws.receive(timeout=10)
                if msg.type is aiohttp.WSMsgType.BINARY and b"x" in msg.data:
                    break
            samples.append(time.perf_counter() - t0)
        return samples
    finally:
        await ws.close()
        await client.close_session(mid, opened.session_id)


async def remote_output(client: FleetClient, mid: str, size: int) -> float:
    t0 = time.perf_counter()
    opened = await client.open_session(mid, ["head", "-c", str(size), "/dev/zero"])
    ws = await client.attach_session(mid, opened.session_id)
    got = 0
    try:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.BINARY:
                got += len(msg.data)
    finally:
        await ws.close()
        await client.close_session(mid, opened.session_id)
    assert got >= size, (got, size)  # nothing dropped: the only viewer is never stalled
    return size / MiB / (time.perf_counter() - t0)


async def run(report: Report, quick: bool) -> None:
    n, size = (100, 16 * MiB) if quick else (400, 100 * MiB)
    print(f"[15] terminals: {n} keystrokes, {size // MiB} MiB of output, local machine")
    with temp_dir() as root, servers(root) as (ns, valkey), FleetUp(root, ns.url, valkey.url) as up:
        watch = await EventWatch().start(ns.url)
        async with FleetClient(up.url, ADMIN_TOKEN) as client:
            try:
                inst = await client.create_instance("bench-term")
                machine = await client.create_machine(inst.id)
                await watch.wait_all("ready", [machine.id], timeout_s=60)
            finally:
                await watch.close()
            await remote_echo(client, machine.id, 10)  # warm up
            floor = await asyncio.to_thread(local_echo, n)
            echo = await remote_echo(client, machine.id, n)
            out_floor = await asyncio.to_thread(local_output, size)
            out = await remote_output(client, machine.id, size)
    for q in (50, 99):
        value, base = percentile(echo, q), percentile(floor, q)
        report.add(Figure("15", f"keystroke echo p{q}", value, "s", base, "local PTY echo",
                          "<= 2x + 2 ms", met=value <= 2 * base + 0.002))  # fmt: skip
    report.add(Figure("15", "terminal output", out, "MiB/s", out_floor, "local PTY read"))
