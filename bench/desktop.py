"""Benchmark 34: the desktop (``machines.desktop.*``) on a local machine.

On the embedded stack, each figure against its baseline in the same run:

- **screenshot round trip**: ``machines.desktop.screenshot`` (PNG), from the API call to the
  PNG decoded in hand, p50, against the same screenshot taken by a local tool inside the
  machine: the platform's Python reading the same framebuffer and encoding the same PNG
  (daemon/desktop_image.py), timed inside the machine over as many rounds, p50. Target: at most
  2x.
- **click round trip**: one ``click`` action through ``machines.desktop.act``, p50 (no
  baseline: an xdotool run is most of it).

The screen shows the machine's browser at a page, so the PNG is a real one.
"""

from __future__ import annotations

import base64
import json
import sys
import time

from bench.common import Figure, Report, percentile, temp_dir
from bench.files import _ready_machine
from bench.stack import ADMIN_TOKEN, FleetUp, servers
from contracts import daemon_desktop as dd
from fleet.client import FleetClient

#: Inside the machine: the daemon's own read and encode, ``n`` rounds, each timed; the p50.
LOCAL = """
import glob, json, pathlib, statistics, sys, time
from daemon import desktop_image as d
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


async def run(report: Report, quick: bool) -> None:
    n = 20 if quick else 100
    print(f"[34] desktop: {n} screenshots and clicks, local provider, vs the same PNG made in "
          "the machine")  # fmt: skip
    with temp_dir() as root, servers(root) as (ns, valkey), FleetUp(root, ns.url, valkey.url) as up:
        async with FleetClient(up.url, ADMIN_TOKEN) as client:
            mid = await _ready_machine(client, ns.url)
            await client.machines_desktop_start(mid, width=1280, height=800)
            await client.write_file(mid, "site/index.html", "<h1>fleet desktop</h1>" * 20)
            await client.start_process(mid, ["python3", "-m", "http.server", "--bind",
                                             "127.0.0.1", "8765"], cwd="site")  # fmt: skip
            await client.machines_desktop_open(mid, "http://127.0.0.1:8765/")
            await client.machines_desktop_act(mid, [dd.Wait(ms=5000)])  # the page painted
            await _screenshots(report, client, mid, n)
            await _clicks(report, client, mid, n)
