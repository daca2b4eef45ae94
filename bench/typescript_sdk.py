"""Benchmark 28: the TypeScript SDK (@fleetd/sdk) against the Python client, in the same run.

On the embedded stack with one local machine: ``machines.exec`` of ``echo x``, each call timed
until its answer, from the Python client (``FleetClient.exec``) and from the SDK
(``fleet.machines.exec``, in one node process, ``bench/typescript_sdk.mjs``, driven over its
stdin), in alternating batches of 10 so that a change of the host's load falls on both, each
side's connection warmed first; and a 64 MiB upload of random bytes, best of the rounds,
alternating (``FleetClient.upload`` of a file; ``fleet.files.write`` of a Uint8Array: both
hash what they send, over ``PUT /machines/{id}/files/{path}``). Targets: the SDK's exec
p50 at most 1.2x the Python client's; its 64 MiB write at least 0.8x the Python upload's
throughput. Needs the SDK built (``cd sdk/typescript && npm run build``).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import msgspec

from bench.common import REPO, Figure, Report, percentile, temp_dir
from bench.files import MiB, make_file
from bench.stack import ADMIN_TOKEN, EventWatch, FleetUp, servers
from fleet.client import FleetClient

ARGV = ["echo", "x"]
SCRIPT = REPO / "bench" / "typescript_sdk.mjs"
SDK_DIST = REPO / "sdk" / "typescript" / "dist" / "esm" / "index.js"


class NodeAnswer(msgspec.Struct, rename="camel"):
    """One line of bench/typescript_sdk.mjs: each exec's seconds, or the write's."""

    execs: list[float] = msgspec.field(default_factory=list)
    write_s: float | None = None


class NodeSide:
    """bench/typescript_sdk.mjs, one node process for the run, driven a command at a time, so
    that its calls interleave with the Python client's in small batches."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, url: str, machine_id: str) -> NodeSide:
        env = {**os.environ, "FLEET_URL": url, "FLEET_TOKEN": ADMIN_TOKEN}
        proc = await asyncio.create_subprocess_exec(
            "node", str(SCRIPT), machine_id, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(proc)

    async def ask(self, command: str) -> NodeAnswer:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(f"{command}\n".encode())
        await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{SCRIPT.name} exited {await self.proc.wait()} on {command!r}")
        return msgspec.json.decode(line, type=NodeAnswer)

    async def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        await self.proc.wait()


async def _python_execs(client: FleetClient, machine_id: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await client.exec(machine_id, ARGV)
        out.append(time.perf_counter() - t0)
    return out


#: Calls per batch: each side's batches alternate, so a change of the host's load falls on both.
BATCH = 10


async def _execs(
    client: FleetClient, node: NodeSide, mid: str, n: int
) -> tuple[list[float], list[float]]:
    """``n`` execs from each side, in alternating batches, each side's connection warmed."""
    await _python_execs(client, mid, 5)
    await node.ask("exec 5")
    py: list[float] = []
    ts: list[float] = []
    for _ in range(max(1, n // BATCH)):
        py += await _python_execs(client, mid, BATCH)
        ts += (await node.ask(f"exec {BATCH}")).execs
    return py, ts


async def _writes(
    client: FleetClient, node: NodeSide, mid: str, local: Path, rounds: int
) -> tuple[float, float]:
    """The best upload time of ``local`` from each side, alternating."""
    size_mib = local.stat().st_size // MiB
    py = ts = float("inf")
    for i in range(rounds):
        t0 = time.perf_counter()
        await client.upload(mid, local, f"bench/py-{i}.bin")
        py = min(py, time.perf_counter() - t0)
        answer = await node.ask(f"write {size_mib} bench/ts-{i}.bin")
        assert answer.write_s is not None
        ts = min(ts, answer.write_s)
    return py, ts


async def run(report: Report, quick: bool) -> None:
    if not SDK_DIST.exists():
        raise SystemExit("benchmark 28 needs the SDK built: cd sdk/typescript && npm run build")
    n, rounds, size = (30 if quick else 100), (2 if quick else 3), 64 * MiB
    print(f"[28] TypeScript SDK vs Python client: exec x{n * rounds}, {size // MiB} MiB write")
    with temp_dir() as root, servers(root) as (ns, valkey), FleetUp(root, ns.url, valkey.url) as up:
        local = root / "file.bin"
        make_file(local, size)
        async with FleetClient(up.url, ADMIN_TOKEN) as client:
            watch = await EventWatch().start(ns.url)
            try:
                inst = await client.create_instance("bench-ts")
                machine = await client.create_machine(inst.id)
                await watch.wait_all("ready", [machine.id], timeout_s=60)
            finally:
                await watch.close()
            mid = machine.id
            node = await NodeSide.start(up.url, mid)
            try:
                py_execs, ts_execs = await _execs(client, node, mid, n * rounds)
                py_up, ts_up = await _writes(client, node, mid, local, rounds)
            finally:
                await node.close()
    p50, base = percentile(ts_execs, 50), percentile(py_execs, 50)
    report.add(Figure("28", "SDK machines.exec p50", p50, "s", base, "Python client exec p50",
                      "<= 1.2x", p50 <= 1.2 * base))  # fmt: skip
    report.add(Figure("28", "SDK machines.exec p95", percentile(ts_execs, 95), "s",
                      percentile(py_execs, 95), "Python client exec p95"))  # fmt: skip
    rate, py_rate = size / MiB / ts_up, size / MiB / py_up
    report.add(Figure("28", "SDK files.write 64 MiB", rate, "MiB/s", py_rate,
                      "Python client upload", ">= 0.8x", rate >= 0.8 * py_rate))  # fmt: skip
