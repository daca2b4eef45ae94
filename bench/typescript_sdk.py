"""Benchmark 27: the TypeScript SDK (@fleetd/sdk) against the Python client, in the same run.

On the embedded stack with one local machine: ``machines.exec`` of ``echo x``, each call timed
until its answer, from the Python client (``FleetClient.exec``) and from the SDK
(``fleet.machines.exec``, in a node process: ``bench/typescript_sdk.mjs``), in interleaved
rounds, each side's connection warmed first; and a 64 MiB upload of random bytes, best of the
rounds, from each (``FleetClient.upload`` of a file; ``fleet.files.write`` of a Uint8Array:
both hash what they send, over ``PUT /machines/{id}/files/{path}``). Targets: the SDK's exec
p50 at most 1.2x the Python client's; its 64 MiB write at least 0.8x the Python upload's
throughput. Needs the SDK built (``cd sdk/typescript && npm run build``).
"""

from __future__ import annotations

import asyncio
import os
import time

import msgspec

from bench.common import REPO, Figure, Report, percentile, temp_dir
from bench.files import MiB, make_file
from bench.stack import ADMIN_TOKEN, EventWatch, FleetUp, servers
from fleet.client import FleetClient

ARGV = ["echo", "x"]
SCRIPT = REPO / "bench" / "typescript_sdk.mjs"
SDK_DIST = REPO / "sdk" / "typescript" / "dist" / "esm" / "index.js"


class NodeRun(msgspec.Struct, rename="camel"):
    """What bench/typescript_sdk.mjs prints: each exec's seconds, the write's."""

    execs: list[float]
    write_s: float | None


async def _node(url: str, machine_id: str, n: int, mib: int, path: str) -> NodeRun:
    env = {**os.environ, "FLEET_URL": url, "FLEET_TOKEN": ADMIN_TOKEN}
    proc = await asyncio.create_subprocess_exec(
        "node", str(SCRIPT), machine_id, str(n), str(mib), path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{SCRIPT.name} exited {proc.returncode}: {err.decode()[-2000:]}")
    return msgspec.json.decode(out, type=NodeRun)


async def _python_execs(client: FleetClient, machine_id: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await client.exec(machine_id, ARGV)
        out.append(time.perf_counter() - t0)
    return out


async def run(report: Report, quick: bool) -> None:
    if not SDK_DIST.exists():
        raise SystemExit("benchmark 27 needs the SDK built: cd sdk/typescript && npm run build")
    n, rounds, size = (30 if quick else 100), (2 if quick else 3), 64 * MiB
    print(f"[27] TypeScript SDK vs Python client: exec x{n * rounds}, {size // MiB} MiB write")
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
            await _python_execs(client, mid, 5)  # warm, as the node side does
            py_execs: list[float] = []
            ts_execs: list[float] = []
            py_up = ts_up = float("inf")
            for i in range(rounds):
                py_execs += await _python_execs(client, mid, n)
                t0 = time.perf_counter()
                await client.upload(mid, local, f"bench/py-{i}.bin")
                py_up = min(py_up, time.perf_counter() - t0)
                got = await _node(up.url, mid, n, size // MiB, f"bench/ts-{i}.bin")
                assert got.write_s is not None
                ts_execs += got.execs
                ts_up = min(ts_up, got.write_s)
    p50, base = percentile(ts_execs, 50), percentile(py_execs, 50)
    report.add(Figure("27", "SDK machines.exec p50", p50, "s", base, "Python client exec p50",
                      "<= 1.2x", p50 <= 1.2 * base))  # fmt: skip
    report.add(Figure("27", "SDK machines.exec p95", percentile(ts_execs, 95), "s",
                      percentile(py_execs, 95), "Python client exec p95"))  # fmt: skip
    rate, py_rate = size / MiB / ts_up, size / MiB / py_up
    report.add(Figure("27", "SDK files.write 64 MiB", rate, "MiB/s", py_rate,
                      "Python client upload", ">= 0.8x", rate >= 0.8 * py_rate))  # fmt: skip
