"""Benchmark 34: the desktop (``machines.desktop.*``) on a local machine.

On the embedded stack, each figure against its baseline in the same run:

- **screenshot round trip**: ``machines.desktop.screenshot`` (PNG), from the API call to the
  PNG decoded in hand, p50, against the same screenshot taken by a local tool inside the
  machine: the platform's Python reading the same framebuffer and encoding the same PNG
  (daemon/desktop/image.py), timed inside the machine over as many rounds, p50. Target: at most
  2x.
- **click round trip**: one ``click`` action through ``machines.desktop.act``, p50 (no
  baseline: an xdotool run is most of it).
- **desktop fork with memory to its first screenshot**: ``machines.fork {memory: true}`` of a
  gvisor machine showing its browser at a page, from the call to the fork's first
  ``machines.desktop.screenshot`` in hand (the same page on it), p50, against a fork with memory
  of a gvisor machine with no desktop to its first ``exec`` answered; the two alternate, each
  fork archived off the clock.

The screen shows the machine's browser at a page, so the PNG is a real one.
"""

from __future__ import annotations

import base64
import json
import sys
import time
from collections.abc import Awaitable, Callable

from bench.common import Figure, Report, percentile, temp_dir
from bench.files import _ready_machine
from bench.gvisor import STACK_ENV, WAIT_S
from bench.stack import ADMIN_TOKEN, FleetUp, servers
from contracts.daemon import desktop as dd
from fleet.client import FleetClient

#: Inside the machine: the daemon's own read and encode, ``n`` rounds, each timed; the p50.
LOCAL = """
import glob, json, pathlib, statistics, sys, time
from daemon.desktop import image as d
fb = pathlib.Path(glob.glob("/tmp/fleet-desktop-*/Xvfb_screen0")[0])
times = []
for _ in range(int(sys.argv[1])):
    t = time.perf_counter()
    shot = d.encode(d.read_frame(fb), "png", 1.0, 10**8)
    times.append(time.perf_counter() - t)
print(json.dumps({"p50": statistics.median(times), "bytes": len(shot.image)}))
"""


async def _screenshots(report: Report, client: FleetClient, mid: str, n: int) -> None:
    api: list[float] = []
    for _ in range(n):
        t = time.perf_counter()
        shot = await client.machines_desktop_screenshot(mid)
        base64.b64decode(shot.image)
        api.append(time.perf_counter() - t)
    local = await client.exec(mid, [sys.executable, "-c", LOCAL, str(n)], timeout_s=300)
    assert local.exit_code == 0, local.stderr
    base = json.loads(local.stdout)["p50"]
    p50 = percentile(api, 50)
    report.add(Figure("34", f"desktop screenshot round trip p50 ({shot.width}x{shot.height} PNG)",
                      p50, "s", base, "the same PNG made inside the machine", "<= 2x",
                      p50 <= 2 * base))  # fmt: skip


async def _clicks(report: Report, client: FleetClient, mid: str, n: int) -> None:
    times: list[float] = []
    for k in range(n):
        t = time.perf_counter()
        await client.machines_desktop_act(mid, [dd.Click(x=10 + k % 50, y=700)])
        times.append(time.perf_counter() - t)
    report.add(Figure("34", "desktop click action round trip p50", percentile(times, 50), "s"))


async def _showing_a_page(client: FleetClient, mid: str) -> None:
    """The machine's desktop at 1280x800, its browser at a page the machine serves, painted."""
    await client.machines_desktop_start(mid, width=1280, height=800)
    await client.write_file(mid, "site/index.html", "<h1>fleet desktop</h1>" * 20)
    await client.start_process(mid, ["python3", "-m", "http.server", "--bind",
                                     "127.0.0.1", "8765"], cwd="site")  # fmt: skip
    await client.machines_desktop_open(mid, "http://127.0.0.1:8765/")
    await client.machines_desktop_act(mid, [dd.Wait(ms=5000)])


async def _gvisor_machine(client: FleetClient, name: str) -> str:
    inst = await client.create_instance(name)
    made = await client.create_machine(inst.id, runtime="gvisor")
    got = await client.wait_for(made.id, ["ready", "failed"], timeout_s=WAIT_S)
    if got.status != "ready":
        raise RuntimeError(f"gvisor machine {made.id} {got.status}: {got.status_reason}")
    return made.id


async def _forked(
    client: FleetClient, mid: str, first: Callable[[str], Awaitable[object]]
) -> float:
    """One fork with memory of ``mid`` to ``first`` done on it; the fork archived after."""
    t0 = time.perf_counter()
    fork = (await client.fork_machine(mid, 1, memory=True))[0]
    got = await client.wait_for(fork.id, ["ready", "failed"], timeout_s=WAIT_S)
    if got.status != "ready":
        raise RuntimeError(f"fork {fork.id} {got.status}: {got.status_reason}")
    await first(fork.id)
    took = time.perf_counter() - t0
    await client.archive_machine(fork.id)
    return took


async def _desktop_forks(report: Report, client: FleetClient, rounds: int) -> None:
    desktop = await _gvisor_machine(client, "bench-desktop-fork")
    await _showing_a_page(client, desktop)
    plain = await _gvisor_machine(client, "bench-plain-fork")

    async def shot(fid: str) -> None:
        got = await client.machines_desktop_screenshot(fid)
        assert got.width == 1280, got.width
        base64.b64decode(got.image)

    async def answered(fid: str) -> None:
        assert (await client.exec(fid, ["true"], timeout_s=WAIT_S)).exit_code == 0

    shots: list[float] = []
    execs: list[float] = []
    for _ in range(rounds):
        shots.append(await _forked(client, desktop, shot))
        execs.append(await _forked(client, plain, answered))
    report.add(Figure("34", "desktop fork with memory to its first screenshot p50, gvisor",
                      percentile(shots, 50), "s", percentile(execs, 50),
                      "fork with memory, no desktop, to its first exec"))  # fmt: skip


async def run(report: Report, quick: bool) -> None:
    n = 20 if quick else 100
    rounds = 2 if quick else 5
    print(f"[34] desktop: {n} screenshots and clicks, local provider, vs the same PNG made in "
          f"the machine; {rounds} desktop forks with memory, gvisor")  # fmt: skip
    with (temp_dir() as root, servers(root) as (ns, valkey),
          FleetUp(root, ns.url, valkey.url, STACK_ENV) as up):  # fmt: skip
        async with FleetClient(up.url, ADMIN_TOKEN) as client:
            mid = await _ready_machine(client, ns.url)
            await _showing_a_page(client, mid)
            await _screenshots(report, client, mid, n)
            await _clicks(report, client, mid, n)
            await _desktop_forks(report, client, rounds)
