"""Benchmark 8 (``python -m bench --only 8``, or ``python -m bench.codemode [--quick]``): codemode's
figures, each against a floor of the same run.

1. sandbox start p50: a ``1`` run's sandbox (bwrap + runner + result) against ``python -c pass``
   under the same sandbox (same bwrap command, same limits);
2. a tool call's round trip from inside the sandbox (``await fleet.instances.list()`` timed in
   the code) against the same call from the client library: target <= 1.5x;
3. 20 concurrent runs: wall time against one run alone;
4. ``run_code("1")`` over the gateway's ``/mcp`` against ``codemode.run`` over ``/rpc``: what
   the MCP transport and the ASGI adapter add.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time

from bench.common import Figure, Report, median, temp_dir
from bench.stack import ADMIN_TOKEN, FleetUp, servers
from contracts.errors import CodemodeUnavailable
from contracts.gateway.codemode import MCP_PATH, RunEvent, RunJob, new_run_id
from fleet.client import FleetClient
from providers.sandbox import filter_fd
from services.codemode.engine import Run
from services.codemode.sandbox import Limits, bwrap_argv, interpreter


async def sandbox_start(n: int) -> tuple[float, float]:
    """p50 ms of a whole trivial run, and of ``python -c pass`` under the same sandbox."""
    floor = []
    limits = Limits()  # the syscall filter compiled once, as the service does
    syscalls = filter_fd(limits.syscalls)
    argv = bwrap_argv(limits, [interpreter(), "-I", "-S", "-c", "pass"], seccomp_fd=syscalls)
    for _ in range(n):
        os.lseek(syscalls, 0, os.SEEK_SET)
        t0 = time.perf_counter()
        await asyncio.to_thread(subprocess.run, argv, check=True, pass_fds=(syscalls,))
        floor.append((time.perf_counter() - t0) * 1000)
    os.close(syscalls)

    async def drop(_: RunEvent) -> None:
        return None

    runs = []
    for _ in range(n):
        job = RunJob(run_id=new_run_id(), code="1", timeout_s=30, token_id="bench")
        t0 = time.perf_counter()
        result = await Run(job, {}, limits, drop).execute()
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


async def mcp_round_trip(client: FleetClient, url: str, n: int) -> tuple[float, float]:
    """p50 ms of ``run_code("1")`` over the gateway's /mcp (the SDK's streamable-HTTP client),
    and of ``codemode.run`` of the same code over /rpc."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    rpc, mcp = [], []
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(url + MCP_PATH, http_client=http)) as mcp_client,
    ):
        for _ in range(n):
            t0 = time.perf_counter()
            await client.code_run("1")
            rpc.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            answer = await mcp_client.call_tool("run_code", {"code": "1"})
            assert not answer.is_error, answer
            mcp.append((time.perf_counter() - t0) * 1000)
    return median(mcp), median(rpc)


async def run(report: Report, quick: bool) -> None:
    n = 10 if quick else 30
    print(f"[8] codemode: sandbox start ({n} runs), tool calls, 20 concurrent runs, /mcp")
    run_p50, floor_p50 = await sandbox_start(n)
    report.add(Figure("8", "codemode sandbox start p50 (a whole `1` run)", run_p50 / 1000, "s",
                      floor_p50 / 1000, "`python -c pass` sandboxed"))  # fmt: skip
    with (
        temp_dir() as root,
        servers(root) as (nats, valkey),
        FleetUp(root, nats.url, valkey.url) as up,
    ):
        async with FleetClient(up.url, ADMIN_TOKEN) as client:
            await codemode_up(client)
            inside, outside = await tool_round_trip(client, 50 if quick else 200)
            report.add(Figure("8", "codemode tool call p50 from inside the sandbox",
                              inside / 1000, "s", outside / 1000, "the same call from FleetClient",
                              "<= 1.5x", inside <= 1.5 * outside))  # fmt: skip
            wall, alone, ok = await concurrent(client, 20)
            report.add(Figure("8", f"codemode 20 concurrent runs, wall ({ok}/20 ok)",
                              wall / 1000, "s", alone / 1000, "one run alone"))  # fmt: skip
            via_mcp, via_rpc = await mcp_round_trip(client, up.url, n)
            report.add(Figure("8", "run_code('1') over /mcp p50", via_mcp / 1000, "s",
                              via_rpc / 1000, "codemode.run over /rpc p50"))  # fmt: skip


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.codemode")
    p.add_argument("--quick", action="store_true")
    asyncio.run(run(Report(), p.parse_args().quick))
