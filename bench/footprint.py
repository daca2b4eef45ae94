"""Benchmark 5: one daemon's idle memory and start-to-ready time.

The daemon is started as the local provider starts it (posix_spawn of ``fleet-daemon``, same
environment) against NATS with the event stream; start-to-ready ends when its ``ready`` report
arrives here, idle RSS is read from /proc a moment later. Baselines, in the same run: a bare
Python interpreter (the floor of any Python process), and a minimal nats-py program that
connects and publishes (the floor of a Python daemon on NATS). A third variant runs the same
daemon with OpenSSL imported first, as a daemon on a ``tls://`` URL has it (and every daemon
had before daemon/lean.py kept it out): what that costs. (An earlier third variant, nats-py's
aiohttp import blocked, became fleet-daemon itself and was dropped.)
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import nats

from bench.common import Figure, Report, median, temp_dir
from bench.daemons import daemon_env, kill_group, spawn
from bench.procstat import rss_mb, uss_pss_mb
from bench.stack import EventWatch, nats_server
from contracts.ids import new_machine_id
from controlplane.bus import ensure_stream
from controlplane.settings import Settings
from fleet.up import NatsServer
from providers.local import daemon_argv

#: The minimal Python daemon on NATS: connect, publish the same ready report, then idle.
MINIMAL = """
import asyncio, os, nats
async def main():
    nc = await nats.connect(os.environ["FLEET_NATS_URL"])
    mid = os.environ["FLEET_MACHINE_ID"]
    await nc.request("machine.daemon-status-reported." + mid, b"{}", timeout=5)
    await asyncio.Event().wait()
asyncio.run(main())
"""
BARE = "import time; time.sleep(60)"
WITH_OPENSSL = "import ssl, hashlib, hmac; from daemon.__main__ import main; main()"
IDLE_S = 1.0


async def sample(
    ns: NatsServer, watch: EventWatch, root: Path, argv: list[str], wait_ready: bool = True
) -> tuple[float, float, float, float]:
    """(start-to-ready s, RSS MB, USS MB, PSS MB) of one process started with ``argv``."""
    mid = new_machine_id()
    home = root / mid
    home.mkdir()
    t0 = time.perf_counter()
    pid = spawn(argv, daemon_env(ns.url, mid, home), root / f"{mid}.log")
    try:
        ready = 0.0
        if wait_ready:
            await watch.wait_all("daemon-status-reported", [mid], timeout_s=30)
            ready = watch.seen["daemon-status-reported", mid] - t0
        await asyncio.sleep(IDLE_S)
        uss, pss = uss_pss_mb(pid)
        return ready, rss_mb(pid) or 0.0, uss or 0.0, pss or 0.0
    finally:
        kill_group(pid)


async def run(report: Report, quick: bool) -> None:
    n = 2 if quick else 7
    print(f"[5] daemon footprint: {n} starts each, idle RSS {IDLE_S:g} s after ready")
    variants = {
        "fleet-daemon": daemon_argv(),
        "minimal nats-py program": [sys.executable, "-I", "-c", MINIMAL],
        "bare python": [sys.executable, "-I", "-c", BARE],
        "fleet-daemon with OpenSSL": [sys.executable, "-I", "-c", WITH_OPENSSL],
    }
    results: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in variants}
    with temp_dir() as root, nats_server(root / "nats") as ns:
        nc = await nats.connect(ns.url, name="bench-footprint")
        await ensure_stream(nc.jetstream(), Settings())
        watch = await EventWatch().start(ns.url)
        try:
            for _ in range(n):  # interleaved, so noise hits every variant alike
                for name, argv in variants.items():
                    results[name].append(
                        await sample(ns, watch, root, argv, wait_ready=name != "bare python")
                    )
        finally:
            await watch.close()
            await nc.close()

    def med(name: str, i: int) -> float:
        return median([r[i] for r in results[name]])

    rss = med("fleet-daemon", 1)
    report.add(
        Figure(
            "5",
            "daemon idle RSS",
            rss,
            "MB",
            med("bare python", 1),
            "bare python",
            "<= 25 MB",
            rss <= 25,
            note=f"USS {med('fleet-daemon', 2):.1f} MB, PSS {med('fleet-daemon', 3):.1f} MB",
        )
    )
    report.add(
        Figure(
            "5",
            "daemon idle RSS vs minimal nats-py program",
            rss,
            "MB",
            med("minimal nats-py program", 1),
            "minimal",
        )
    )
    ready = med("fleet-daemon", 0)
    report.add(
        Figure(
            "5",
            "daemon start-to-ready",
            ready,
            "s",
            med("minimal nats-py program", 0),
            "minimal nats-py program",
        )
    )
    ossl = "fleet-daemon with OpenSSL"
    report.add(
        Figure(
            "5",
            "idle RSS with OpenSSL loaded (as on tls://)",
            med(ossl, 1),
            "MB",
            rss,
            "fleet-daemon",
            note=f"USS {med(ossl, 2):.1f} MB",
        )
    )
    report.add(
        Figure("5", "start-to-ready with OpenSSL loaded", med(ossl, 0), "s", ready, "fleet-daemon")
    )
