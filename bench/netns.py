"""Benchmark 19: what a local machine's own network costs (providers/sandbox/netns.py).

Two `fleet up` stacks side by side, NATS on the host's loopback as `fleet up` runs it (the
daemon goes through the one port pasta forwards): one with each machine in its own network
namespace (the default), one with ``FLEET_SANDBOX_NETWORK=host`` (the host's network, the
baseline). Samples alternate between them, one machine at a time:

- create -> ready p50;
- exec p50 (``true``) through the gateway;
- egress: a 100 MiB download (HTTP, from a server in a network namespace of the benchmark's
  own, bench/outside.py) timed inside the machine, against the same download run on the host.

Needs root and iproute2 (the outside host).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

from bench.common import Figure, Report, percentile, temp_dir
from bench.outside import outside_host
from bench.stack import EventWatch, FleetUp, Gateway, servers
from contracts.gateway.rpc import (
    INSTANCES_CREATE,
    MACHINES_CREATE,
    MACHINES_EXEC,
    CreateInstanceParams,
    CreateMachineParams,
    MachineExecParams,
)

BIG_MIB = 100
#: Downloads ``argv[1]`` to nowhere; prints the seconds it took.
DOWNLOAD = """
import sys, time, urllib.request
t0 = time.perf_counter()
with urllib.request.urlopen(sys.argv[1], timeout=120) as r:
    while r.read(1 << 20):
        pass
print(time.perf_counter() - t0)
"""


class _Side:
    def __init__(self, up: FleetUp, nats_url: str) -> None:
        self.up, self.nats_url = up, nats_url
        self.gw = Gateway(up.url)
        self.watch = EventWatch()
        self.instances: list[str] = []
        self.ready: list[float] = []
        self.exec: list[float] = []
        self.download: list[float] = []
        self.machines: list[str] = []

    async def start(self, n: int) -> None:
        await self.watch.start(self.nats_url)
        made = await self.gw.batch(
            INSTANCES_CREATE, [CreateInstanceParams(name=f"net-{i}") for i in range(n + 1)]
        )
        self.instances = [i.id for i in made]

    async def create(self, measured: bool = True) -> str:
        t0 = time.perf_counter()
        machine = await self.gw.call(
            MACHINES_CREATE,
            CreateMachineParams(instance_id=self.instances.pop(), provider="local"),
        )
        await self.watch.wait_all("ready", [machine.id], timeout_s=120)
        if machine.id in self.watch.failed:
            raise RuntimeError(f"machine {machine.id} failed: {self.watch.failed[machine.id]}")
        if measured:
            self.ready.append(self.watch.seen["ready", machine.id] - t0)
        self.machines.append(machine.id)
        return str(machine.id)

    async def exec_true(self) -> None:
        t0 = time.perf_counter()
        await self.gw.call(
            MACHINES_EXEC, MachineExecParams(machine_id=self.machines[0], command=["true"])
        )
        self.exec.append(time.perf_counter() - t0)

    async def fetch(self, url: str) -> None:
        result = await self.gw.call(
            MACHINES_EXEC,
            MachineExecParams(
                machine_id=self.machines[0],
                command=["python3", "-c", DOWNLOAD, url],
                timeout_s=180,
            ),
        )
        if result.exit_code != 0:
            raise RuntimeError(f"download in a machine failed: {result.stderr[-300:]}")
        self.download.append(float(result.stdout))

    async def close(self) -> None:
        await self.watch.close()
        await self.gw.close()


def _host_download(url: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", DOWNLOAD, url], capture_output=True, check=True, text=True
    )
    return float(out.stdout)


async def run(report: Report, quick: bool) -> None:
    n = 3 if quick else 10
    print(f"[19] own network: {n} machines each, one at a time; {BIG_MIB} MiB downloads")
    with (
        temp_dir() as root,
        outside_host(root / "outside", big_mib=BIG_MIB) as outside,
        servers(root / "own") as (ons, ovk),
        servers(root / "host") as (hns, hvk),
        FleetUp(root / "own", ons.url, ovk.url) as oup,
        FleetUp(root / "host", hns.url, hvk.url, {"FLEET_SANDBOX_NETWORK": "host"}) as hup,
    ):
        own, host = _Side(oup, ons.url), _Side(hup, hns.url)
        host_dl: list[float] = []
        try:
            await own.start(n + 1)
            await host.start(n + 1)
            for side in (own, host):  # unmeasured: warms the services' caches
                await side.create(measured=False)
            for _ in range(n):
                for side in (own, host):
                    await side.create()
            for _ in range(20 if not quick else 10):
                for side in (own, host):
                    await side.exec_true()
            url = outside.url("big.bin")
            for _ in range(3 if quick else 5):
                await own.fetch(url)
                await host.fetch(url)
                host_dl.append(await asyncio.to_thread(_host_download, url))
        finally:
            await own.close()
            await host.close()
    _report(report, own, host, host_dl)


def _report(report: Report, own: _Side, host: _Side, host_dl: list[float]) -> None:
    report.add(Figure("19", "local create-to-ready p50, own network",
                      percentile(own.ready, 50), "s", percentile(host.ready, 50),
                      "host network"))  # fmt: skip
    report.add(Figure("19", "exec p50, own network", percentile(own.exec, 50), "s",
                      percentile(host.exec, 50), "host network"))  # fmt: skip
    mib_s = [BIG_MIB / s for s in own.download]
    report.add(Figure("19", f"{BIG_MIB} MiB download in a machine, own network",
                      percentile(mib_s, 50), "MiB/s", percentile([BIG_MIB / s for s in host_dl],
                      50), "the host itself"))  # fmt: skip
    report.note(
        "download p50 in a machine on the host's network: "
        f"{percentile([BIG_MIB / s for s in host.download], 50):.0f} MiB/s; samples (s): "
        + json.dumps({"own": own.download, "hostnet": host.download, "host": host_dl})
    )
