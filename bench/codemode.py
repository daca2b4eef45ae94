"""python -m bench.codemode [--quick]: codemode's figures, each against a floor of the same run.

1. sandbox start p50: a ``1`` run's sandbox (bwrap + runner + result) against ``python -c pass``
   under the same sandbox (same bwrap command, same limits);
2. a tool call's round trip from inside the sandbox (``await fleet.instances.list()`` timed in
   the code) against the same call from the client library: target <= 1.5x;
3. 20 concurrent runs: wall time against one run alone.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time

from bench.common import median, temp_dir
from bench.stack import ADMIN_TOKEN, FleetUp, servers
from contracts.codemode import RunEvent, RunJob, new_run_id
from contracts.errors import CodemodeUnavailable
from fleet.client import FleetClient
from services.codemode.engine import Run
from services.codemode.sandbox import Limits, bwrap_argv, interpreter


async def sandbox_start(n: int) -> tuple[float, float]:
    """p50 ms of a whole trivial run, and of ``python -c pass`` under the same sandbox."""
    floor = []
    argv = bwrap_argv(Limits(), [interpreter(), "-I", "-S", "-c", "pass"])
    for _ in range(n):
        t0 = time.perf_counter()
        await asyncio.to_thread(subprocess.run, argv, check=True)
        floor.append((time.perf_counter() - t0) * 1000)

    async def drop(_: RunEvent) -> None:
        return None

    runs = []
    for _ in range(n):
        job = RunJob(run_id=new_run_id(), code="1", timeout_s=30, token_id="bench")
        t0 = time.perf_counter()
        result = await Run(job, {}, Limits(), drop).execute()
        assert result.status == "ok", result
        runs.append((time.perf_counter() - t0) * 1000)
    return median(runs), median(floor)


TOOL_CODE = """
import time
times = []
for _ in range({n}):
    t0 = time.perf_counter()
    await fleet.instances.list()
    times.append((time.perf_counter() - t0) * 1000)
times
"""


async def codemode_up(client: FleetClient) -> None:
    """`fleet up` is healthy once the gateway is; the codemode service may come a moment later."""
    async with asyncio.timeout(60):
        while True:
            try:
                await client.code_run("1")
                return
            except CodemodeUnavailable:
                await asyncio.sleep(0.2)


async def tool_round_trip(client: FleetClient, n: int) -> tuple[float, float]:
    outside = []
    for _ in range(n):
        t0 = time.perf_counter()
        await client.list_instances()
        outside.append((time.perf_counter() - t0) * 1000)
    result = await client.code_run(TOOL_CODE.format(n=n), timeout_s=120)
    assert result.status == "ok", result
    return median(result.result), median(outside)


async def concurrent(client: FleetClient, k: int) -> tuple[float, float, int]:
    code = "sum(range(100000))"
    t0 = time.perf_counter()
    await client.code_run(code)
    alone = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    results = await asyncio.gather(*(client.code_run(code) for _ in range(k)))
    wall = (time.perf_counter() - t0) * 1000
    return wall, alone, sum(r.status == "ok" for r in results)


async def main(quick: bool) -> None:
    n = 10 if quick else 30
    run_p50, floor_p50 = await sandbox_start(n)
    print(f"1. sandbox start p50: run {run_p50:.1f} ms vs `python -c pass` sandboxed "
          f"{floor_p50:.1f} ms ({run_p50 / floor_p50:.2f}x)")  # fmt: skip
    with (
        temp_dir() as root,
        servers(root) as (nats, valkey),
        FleetUp(root, nats.url, valkey.url) as up,
    ):
        async with FleetClient(up.url, ADMIN_TOKEN) as client:
            await codemode_up(client)
            inside, outside = await tool_round_trip(client, 50 if quick else 200)
            verdict = "met" if inside <= 1.5 * outside else "NOT met"
            ratio = inside / outside
            print(f"2. tool call p50: inside {inside:.2f} ms vs client library "
                      f"{outside:.2f} ms ({ratio:.2f}x; target <= 1.5x: {verdict})")  # fmt: skip
            wall, alone, ok = await concurrent(client, 20)
            print(f"3. 20 concurrent runs: {wall:.0f} ms wall ({ok}/20 ok) vs one run "
                      f"alone {alone:.0f} ms ({wall / alone:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.codemode")
    p.add_argument("--quick", action="store_true")
    asyncio.run(main(p.parse_args().quick))
