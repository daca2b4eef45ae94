"""The design's own floor for benchmark 3: the pipeline's hops with nothing else.

Three stage processes (``python -m bench.skeleton <stage> <nats-url> <data-dir>``) do what the
provisioner, setup pusher and prober must do at the least, through the same consumer machinery
(``controlplane.events.consumer``), daemon client and stored publishes: start the machine through
the swarm provider and publish ``machine.provisioned``; on the daemon's ready report write the
.env and cron table in one signed batch and publish ``machine.setup-pushed``; call ``health``
and publish ``machine.ready``. No Redis, no gateway, no status records, no log lines, no
metrics scrape: every JetStream hop and every daemon call of the real pipeline, and nothing of
its state. What the real pipeline costs above this is its state and its bookkeeping; what this
costs above the swarm floor is the design (five stored events and two daemon round trips per
machine) on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from bench.common import REPO
from bench.procstat import cpu_seconds
from bench.stack import EventWatch, nats_server
from contracts.bus.events import (
    AnyEvent,
    DaemonStatusReported,
    MachineCreated,
    MachineProvisioned,
    MachineReady,
    SetupPushed,
)
from contracts.bus.subjects import EventKind
from contracts.daemon.rpc import WriteFileParams
from contracts.daemon.signing import signing_key
from contracts.ids import derived_event_id, new_event_id, new_instance_id, new_machine_id
from controlplane.bus import Bus
from controlplane.calls.daemon_client import DaemonClient
from controlplane.events.consumer import Consumer
from controlplane.settings import Settings

STAGES = ("provisioner", "setup", "prober")
#: Creates in flight, as benchmark 3's gateway batches (4 batches of 50).
CREATES_IN_FLIGHT = 200


#: The skeleton's 1,000 machines take 2-4 s here: a stage that died shows as a timeout.
READY_TIMEOUT_S = 120.0


class Skeleton(NamedTuple):
    seconds: float | None  # from the first create to the last machine.ready (None: not all)
    ready: int  # machines that reached ready
    cpu: dict[str, float]  # CPU seconds of the run: stages, nats-server, swarm hosts


def token(machine_id: str) -> str:
    return f"skeleton-token-{machine_id}"


@functools.cache
def _key(machine_id: str) -> bytes:
    return signing_key(token(machine_id))


async def _keys(machine_id: str) -> bytes:
    # Cached, as the stages' MachineKeys caches the keys it derives.
    return _key(machine_id)


Handle = Callable[[Any], Awaitable[None]]


def _handler(stage: str, bus: Bus, url: str, data_dir: Path) -> tuple[type[AnyEvent], Handle]:
    daemons = DaemonClient(bus.nc, keys=_keys, timeout_s=30)
    if stage == "provisioner":
        from providers.swarm import SwarmProvider  # the host's module, only where it is used

        swarm = SwarmProvider(
            data_dir=data_dir,
            nats_url=url,
            environ=os.environ,
            host_size=int(os.environ["FLEET_SWARM_HOST_SIZE"]),
        )

        async def provision(ev: MachineCreated) -> None:
            external_id = await swarm.start(ev.machine_id, token(ev.machine_id))
            await bus.publish(
                MachineProvisioned(
                    event_id=derived_event_id(ev.event_id, "provisioned"),
                    machine_id=ev.machine_id,
                    provider="swarm",
                    external_id=external_id,
                ),
            )

        return MachineCreated, provision
    if stage == "setup":

        async def push(ev: DaemonStatusReported) -> None:
            if ev.status != "ready":
                return
            env = WriteFileParams(
                path="~/.env",
                mode=0o600,
                content=(
                    f"FLEET_MACHINE_ID={ev.machine_id}\nFLEET_INSTANCE_ID={ev.machine_id}\nA=1\n"
                ),
            )
            cron = WriteFileParams(path="~/.fleet/cron.json", content='{"jobs":[]}\n', mode=0o600)
            written, _ = await daemons.machine(ev.machine_id).write_files([env, cron])
            await bus.publish(
                SetupPushed(
                    event_id=derived_event_id(ev.event_id, "setup-pushed"),
                    machine_id=ev.machine_id,
                    env_path=written.path,
                    env_bytes=written.bytes_written,
                    repo_paths=[],
                ),
            )

        return DaemonStatusReported, push

    async def probe(ev: SetupPushed) -> None:
        health = await daemons.machine(ev.machine_id).health(files=[ev.env_path], timeout_s=30)
        if not health.ok or health.missing:
            raise RuntimeError(f"{ev.machine_id} is not healthy: {health}")
        await bus.publish(
            MachineReady(event_id=derived_event_id(ev.event_id, "ready"), machine_id=ev.machine_id),
        )

    return SetupPushed, probe


async def _serve(stage: str, url: str, data_dir: Path) -> None:
    async with Bus(Settings(nats_url=url), name=f"skeleton-{stage}") as bus:
        event_type, handle = _handler(stage, bus, url, data_dir)

        async def give_up(event: Any, reason: str) -> None:
            print(f"skeleton {stage}: gave up on {event.machine_id}: {reason}", file=sys.stderr)

        durable = f"skeleton-{stage}"
        async with Consumer(bus, durable=durable, event_type=event_type, handler=handle,
                            give_up=give_up):  # fmt: skip
            print("serving", flush=True)
            await asyncio.Event().wait()


@contextlib.contextmanager
def _stages(url: str, data_dir: Path, host_size: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = dict(os.environ, FLEET_SWARM_HOST_SIZE=str(host_size))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.skeleton", s, url, str(data_dir)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
        )
        for s in STAGES
    ]
    try:
        for p in procs:  # each says so once its consumer is bound
            assert p.stdout is not None
            if p.stdout.readline().strip() != b"serving":
                raise RuntimeError(f"a skeleton stage did not start (exit {p.poll()})")
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)


async def run(root: Path, n: int, host_size: int) -> Skeleton:
    """n machines through the skeleton, on a NATS server of its own; swarm hosts stopped after."""
    from providers.swarm import stop_all_swarm

    data_dir = root / "skeleton"
    with nats_server(root / "skeleton-nats") as ns:
        async with Bus(Settings(nats_url=ns.url), name="bench-skeleton") as bus:
            watch = await EventWatch().start(ns.url, [EventKind.READY])
            try:
                with _stages(ns.url, data_dir, host_size) as procs:
                    pids = {s: p.pid for s, p in zip(STAGES, procs, strict=True)}
                    pids["nats-server"] = ns.proc.pid if ns.proc is not None else 0
                    return await _measure(bus, watch, pids, data_dir, n)
            finally:
                await watch.close()
                stop_all_swarm(data_dir)


async def _measure(
    bus: Bus, watch: EventWatch, pids: dict[str, int], data_dir: Path, n: int
) -> Skeleton:
    from bench.pipeline import host_pids  # a cycle otherwise: pipeline runs this

    cpu0 = {k: cpu_seconds(p) or 0.0 for k, p in pids.items()}
    ids = [new_machine_id() for _ in range(n)]
    gate = asyncio.Semaphore(CREATES_IN_FLIGHT)

    async def create(mid: str) -> None:
        async with gate:
            created = MachineCreated(event_id=new_event_id(), machine_id=mid,
                                     instance_id=new_instance_id(), provider="swarm")  # fmt: skip
            await bus.publish(created)

    t0 = time.perf_counter()
    await asyncio.gather(*(create(m) for m in ids))
    with contextlib.suppress(TimeoutError):  # reported as "k of n ready"
        await watch.wait_all("ready", ids, timeout_s=READY_TIMEOUT_S)
    ready = [watch.seen[k] for m in ids if (k := ("ready", m)) in watch.seen]
    seconds = max(ready) - t0 if len(ready) == n else None
    cpu = {k: (cpu_seconds(p) or 0.0) - cpu0[k] for k, p in pids.items()}
    cpu["swarm hosts"] = sum(cpu_seconds(p) or 0.0 for p in host_pids(data_dir).values())
    return Skeleton(seconds, len(ready), cpu)


def main() -> None:
    from base.logs import configure_logging
    from controlplane.process.event_loop import run as run_loop

    configure_logging(level="warning")
    stage, url, data_dir = sys.argv[1:4]
    run_loop(_serve(stage, url, Path(data_dir)), "uvloop")


if __name__ == "__main__":
    main()
