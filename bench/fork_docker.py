"""Benchmark 22's docker stack: `fleet up` with NATS on the docker machines' gateway (where
containers reach it) and no warm pool. A machine's home is its volume's directory on this host
(the local engine's), read for the source's ticks; each fork's copy is as its record says
(providers/docker/copy.py). Whatever the run made on the engine is removed after it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiodocker
import msgspec

from bench.stack import FleetUp, servers
from bench.warm_pool import _Side
from contracts.bus.events import HomeCopy
from controlplane.settings import Settings
from fleet.up import prepare
from providers.docker import (
    LABEL_HOME_COPY,
    LABEL_STACK,
    container_name,
    copy_record,
    home_volumes,
    remove_home,
)

HomeOf = Callable[[str], Awaitable[Path]]


@asynccontextmanager
async def docker_stack(
    root: Path,
) -> AsyncIterator[tuple[_Side, HomeOf, Callable[[str], Awaitable[HomeCopy]]]]:
    """The stack's side, where a machine's home is, and how a fork's home was copied."""
    gateway, _ = await prepare(Settings(data_dir=str(root / "build")), "[22]")
    env = {"FLEET_WARM_POOL": "docker=0"}
    with (
        servers(root / "docker", host=gateway) as (ns, vk),
        FleetUp(root / "docker", ns.url, vk.url, env) as up,
    ):
        async with aiodocker.Docker() as docker:
            side = _Side(up, ns.url, "docker")

            async def home_of(mid: str) -> Path:
                c = await docker.containers.get(container_name(mid))
                vol = await docker.volumes.get(home_volumes(c)[0])  # type: ignore[no-untyped-call]
                return Path((await vol.show())["Mountpoint"])

            async def copied(mid: str) -> HomeCopy:
                vol = await docker.volumes.get(copy_record(mid))  # type: ignore[no-untyped-call]
                label = (await vol.show())["Labels"][LABEL_HOME_COPY]
                return msgspec.json.decode(label, type=HomeCopy)

            try:
                yield side, home_of, copied
            finally:
                await side.close()
                await _remove(docker, str(up.data_dir.resolve()))


async def _remove(docker: aiodocker.Docker, stack: str) -> None:
    """The stack's containers, then its volumes (homes, with their code and token volumes
    beside them, and the forks' records)."""
    label = {"label": [f"{LABEL_STACK}={stack}"]}
    for c in await docker.containers.list(all=True, filters=label):
        await c.delete(force=True)
    found: Any = await docker.volumes.list(filters=label)  # type: ignore[no-untyped-call]
    for vol in found.get("Volumes") or []:
        await remove_home(docker, vol["Name"])
