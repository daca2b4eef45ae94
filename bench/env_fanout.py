"""Benchmark 4: an env change across every running machine, until each daemon has written the
new .env (seen in the machines' homes on disk, so nothing but the files is trusted).

Runs on the stack and machines benchmark 3 left ready. First a new platform env var alone (the
setup pusher pushes it by itself), timed until the value is in every machine's
``~/.fleet/.env`` on disk; its floor is today's refreshEnv path, measured next: one
``machines.refreshEnv`` call (no params: every running machine), which answers once every
machine has written.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import nats

from bench.common import Figure, Report
from bench.daemons import KeySource, daemon_client
from bench.stack import Gateway, RpcError
from contracts.gateway.rpc import (
    ENV_SET,
    MACHINES_REFRESH_ENV,
    RefreshEnvParams,
    SetEnvParams,
)

METHOD = MACHINES_REFRESH_ENV.name
VAR = "BENCH_FANOUT"


async def direct_floor(nats_url: str, keys: KeySource, machine_ids: list[str], size: int) -> float:
    """The floor: the same-size file written to every machine straight through DaemonClient
    from this process (64 in flight), no gateway or services in between."""
    nc = await nats.connect(nats_url, name="bench-fanout")
    try:
        daemons = daemon_client(nc, keys, timeout_s=30)
        content = "#" * size
        sem = asyncio.Semaphore(64)

        async def one(mid: str) -> None:
            async with sem:
                await daemons.machine(mid).write_file("~/.fleet/.env.bench", content, 0o600)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(m) for m in machine_ids))
        return time.perf_counter() - t0
    finally:
        await nc.close()


async def all_written(homes: dict[str, Path], marker: str) -> None:
    """Until ``marker`` is in every machine's .env on disk."""
    pending = dict(homes)
    async with asyncio.timeout(120):
        while pending:
            for mid, home in list(pending.items()):
                try:
                    if marker in (home / ".fleet" / ".env").read_text():
                        del pending[mid]
                except OSError:
                    pass
            if pending:
                await asyncio.sleep(0.02)


async def live_push(gw: Gateway, homes: dict[str, Path]) -> float:
    """Issue 15: env.set alone (no refresh call): the setup pusher's debounced push reaches
    every running machine; seconds from the call to the last .env on disk."""
    marker = uuid.uuid4().hex
    t0 = time.perf_counter()
    await gw.call(ENV_SET, SetEnvParams(name=VAR, value=marker))
    await all_written(homes, marker)
    return time.perf_counter() - t0


async def run(
    report: Report, gw: Gateway, nats_url: str, keys: KeySource, homes: dict[str, Path]
) -> None:
    print(f"[4] env fan-out: live push, and {METHOD}, across {len(homes)} running machines")
    size = max(len((h / ".fleet" / ".env").read_bytes()) for h in homes.values()) + 60
    floor = await direct_floor(nats_url, keys, list(homes), size)
    # An env.set is pushed by itself; refreshEnv (timed after the live push has
    # landed, so the two never share the machines) rewrites the same bytes, at the same cost.
    live = await live_push(gw, homes)
    t0 = time.perf_counter()
    try:
        result = await gw.call(MACHINES_REFRESH_ENV, RefreshEnvParams())
    except RpcError as exc:
        report.skipped.append(f"4 env fan-out: {METHOD} answered {exc}")
        print(f"    skipped: {METHOD} answered {exc}")
        return
    elapsed = time.perf_counter() - t0  # it answers once every machine has written
    if result.written != len(homes):
        report.note(f"{METHOD} wrote {result.written} of {len(homes)}: {result.failed[:3]}")
    report.add(Figure("4", f"env.set to every .env written, live push ({len(homes)})", live,
                      "s", elapsed, "refreshEnv path", "< 2 s", live < 2.0,
                      note="includes the setup pusher's debounce (0.2 s quiet)"))  # fmt: skip
    report.add(
        Figure(
            "4",
            f"refreshEnv to every .env written ({len(homes)})",
            elapsed,
            "s",
            floor,
            "direct writeFile fan-out",
            "< 2 s",
            elapsed < 2.0,
        )
    )
