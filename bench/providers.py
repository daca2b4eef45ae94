"""Benchmark 9: what isolation costs, each figure against a floor measured in the same run.

- sandboxed local create -> ready against unsandboxed (``fleet up --no-sandbox``): <= 1.2x;
- docker create -> ready against its floor: ``docker run`` of the same machine image running a
  minimal nats-py connect, until NATS stamps that connection: <= 1.5x;
- N docker machines (100 by default) created in one batch, all ready: < 60 s;
- exec p50 (``true``) inside a docker machine and inside a sandboxed local one, against an
  unsandboxed local machine.

One machine at a time for the create -> ready samples (the median of each), on NATS listening
on the docker machines' network gateway (fleet up --provider docker does the same).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import aiodocker

from bench.common import Figure, Report, percentile, temp_dir
from bench.stack import EventWatch, FleetUp, Gateway, connz, rfc3339_to_epoch, servers
from contracts.gateway.rpc import (
    INSTANCES_CREATE,
    MACHINES_CREATE,
    MACHINES_EXEC,
    CreateInstanceParams,
    CreateMachineParams,
    MachineExecParams,
)
from contracts.ids import new_machine_id
from contracts.models import ProviderName
from controlplane.settings import Settings
from fleet.up import NatsServer, prepare
from providers.docker import LABEL_MACHINE


async def run(report: Report, quick: bool, machines: int | None = None) -> None:
    n = 3 if quick else 10
    many = machines or (10 if quick else 100)
    with temp_dir() as root:
        gateway, image = await prepare(Settings(data_dir=str(root / "build")), "[8]")
        print(f"[8] providers: {n} machines each, one at a time; {many} docker machines at once")
        unboxed = await _stack_samples(root / "none", gateway, "local", n, ("--no-sandbox",))
        boxed = await _stack_samples(root / "bwrap", gateway, "local", n, ())
        docker = await _stack_samples(root / "docker", gateway, "docker", n, (), many=many)
        with servers(root / "floor", host=gateway) as (ns, _):
            floors = [await _docker_floor(ns, image) for _ in range(n)]
    _report(report, unboxed, boxed, docker, floors, many)


class Samples:
    def __init__(self) -> None:
        self.ready: list[float] = []
        self.exec: list[float] = []
        self.many_s: float | None = None


async def _stack_samples(
    root: Path, gateway: str, provider: ProviderName, n: int, args: tuple[str, ...],
    many: int = 0,
) -> Samples:  # fmt: skip
    out = Samples()
    with servers(root, host=gateway) as (ns, valkey), FleetUp(
        root, ns.url, valkey.url, extra_args=args
    ) as up:  # fmt: skip
        gw, watch = Gateway(up.url), await EventWatch().start(ns.url)
        try:
            insts = await gw.batch(INSTANCES_CREATE, [CreateInstanceParams(name=f"b{i}")
                                                      for i in range(n + 1)])  # fmt: skip
            await _ready_one(gw, watch, insts.pop().id, provider)  # warms caches (and the image)
            mids = []
            for inst in insts:
                t0 = time.perf_counter()
                mid = await _ready_one(gw, watch, inst.id, provider)
                out.ready.append(watch.seen["ready", mid] - t0)
                mids.append(mid)
            for _ in range(20 if n > 3 else 10):
                t0 = time.perf_counter()
                await gw.call(
                    MACHINES_EXEC, MachineExecParams(machine_id=mids[0], command=["true"])
                )
                out.exec.append(time.perf_counter() - t0)
            if many:
                out.many_s = await _many(gw, watch, provider, many)
        finally:
            await watch.close()
            await gw.close()
            if provider == "docker":
                await _remove_containers()
    return out


async def _ready_one(gw: Gateway, watch: EventWatch, iid: str, provider: ProviderName) -> str:
    machine = await gw.call(
        MACHINES_CREATE, CreateMachineParams(instance_id=iid, provider=provider)
    )
    await watch.wait_all("ready", [machine.id], timeout_s=180)
    if machine.id in watch.failed:
        raise RuntimeError(f"machine {machine.id} failed: {watch.failed[machine.id]}")
    return machine.id


async def _many(gw: Gateway, watch: EventWatch, provider: ProviderName, count: int) -> float:
    insts = await gw.batch(INSTANCES_CREATE, [CreateInstanceParams(name=f"m{i}")
                                              for i in range(count)])  # fmt: skip
    t0 = time.perf_counter()
    made = await gw.batch(MACHINES_CREATE, [CreateMachineParams(instance_id=i.id, provider=provider)
                                            for i in insts])  # fmt: skip
    await watch.wait_all("ready", [m.id for m in made], timeout_s=600)
    failed = [m.id for m in made if m.id in watch.failed]
    if failed:
        raise RuntimeError(f"{len(failed)} of {count} machines failed: {watch.failed[failed[0]]}")
    return time.perf_counter() - t0


async def _docker_floor(ns: NatsServer, image: str) -> float:
    """``docker run`` of the machine image with a minimal nats-py connect: seconds from the
    create call to the connection, as NATS stamps it."""
    name = f"floor:{new_machine_id()}"
    code = (f"import asyncio, nats\nasync def main():\n    nc = await nats.connect({ns.url!r}, "
            f"name={name!r})\n    await asyncio.sleep(30)\nasyncio.run(main())\n")  # fmt: skip
    config: dict[str, Any] = {
        "Image": image, "Cmd": ["python3", "-c", code], "Labels": {LABEL_MACHINE: "floor"},
        "HostConfig": {"NetworkMode": "fleet-machines", "Init": True},
    }  # fmt: skip
    async with aiodocker.Docker() as docker:
        started = time.time()
        c = await docker.containers.run(config)
        try:
            async with asyncio.timeout(30):
                while True:
                    await asyncio.sleep(0.05)  # not on the clock: NATS stamps the connection
                    conns = [x for x in connz(ns) if x.get("name") == name]
                    if conns:
                        return rfc3339_to_epoch(conns[0]["start"]) - started
        finally:
            await c.delete(force=True)


async def _remove_containers() -> None:
    async with aiodocker.Docker() as docker:
        for c in await docker.containers.list(all=True, filters={"label": [LABEL_MACHINE]}):
            with contextlib.suppress(aiodocker.DockerError):
                await c.delete(force=True, v=True)
        for v in (await docker.volumes.list())["Volumes"] or []:  # type: ignore[no-untyped-call]
            if v["Name"].startswith("fleet-m-"):
                with contextlib.suppress(aiodocker.DockerError):
                    await docker.volumes.get(v["Name"])  # type: ignore[no-untyped-call]
                    await docker._query_json(f"volumes/{v['Name']}", "DELETE")


def _report(
    report: Report, unboxed: Samples, boxed: Samples, docker: Samples, floors: list[float],
    many: int,
) -> None:  # fmt: skip
    u50, b50, d50, f50 = (percentile(x, 50) for x in (unboxed.ready, boxed.ready, docker.ready,
                                                       floors))  # fmt: skip
    report.add(Figure("9", "local sandboxed create-to-ready p50", b50, "s", u50, "unsandboxed",
                      "<= 1.2x", b50 <= 1.2 * u50))  # fmt: skip
    report.add(Figure("9", "docker create-to-ready p50", d50, "s", f50, "docker run + connect",
                      "<= 1.5x", d50 <= 1.5 * f50))  # fmt: skip
    if docker.many_s is not None:
        report.add(Figure("9", f"{many} docker machines ready", docker.many_s, "s", None, "",
                          "< 60 s", docker.many_s < 60))  # fmt: skip
    e_local = percentile(unboxed.exec, 50)
    for name, s in (("local sandboxed", boxed), ("docker", docker)):
        report.add(Figure("9", f"exec p50 in {name}", percentile(s.exec, 50), "s", e_local,
                          "local unsandboxed"))  # fmt: skip
