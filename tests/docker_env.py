"""What the docker provider's tests share: the engine (DOCKER_HOST's or the local one, which
``./run test`` starts), the machine image built once per session, NATS on the machines'
network, and the containers' host-side facts (home volume, daemon pid). No skipping: without
an engine these fixtures fail, naming what is missing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiodocker
import pytest

from fleet.docker_setup import prepare
from fleet.embedded import NatsServer
from providers.docker import LABEL_POOL, container_name, machine_containers, volume_name
from services.common.settings import Settings


@pytest.fixture(scope="session")
def docker_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(the machines' network gateway, the machine image), built if this engine lacks it."""
    data = tmp_path_factory.mktemp("docker-build")
    try:
        return asyncio.run(prepare(Settings(data_dir=str(data)), "tests"))
    except aiodocker.DockerError as exc:  # not a skip: the suite needs an engine
        raise RuntimeError(f"no Docker engine answers ({exc}): run the suite with ./run test, "
                           "which starts dockerd, or set DOCKER_HOST") from exc  # fmt: skip


@pytest.fixture
def docker_gateway(docker_image: tuple[str, str]) -> str:
    return docker_image[0]


@pytest.fixture
def nats_server(tmp_path: Path, docker_gateway: str) -> Iterator[NatsServer]:
    """NATS where both local machines (the host's network) and containers reach it."""
    with NatsServer(tmp_path / "nats", host=docker_gateway) as server:
        yield server


@pytest.fixture
def remove_containers() -> Iterator[None]:
    """Every fleet container and home volume is removed after the test."""
    yield
    asyncio.run(_remove_all())


async def _remove_all() -> None:
    async with aiodocker.Docker() as docker:
        for mid in await machine_containers(docker):
            await docker_json(docker, f"containers/{container_name(mid)}", "DELETE",
                              params={"force": "1"})  # fmt: skip
            await docker_json(docker, f"volumes/{volume_name(mid)}", "DELETE")
        # The warm pool's (claimed or not: a claimed one's home is the pool's volume).
        filters = json.dumps({"label": [LABEL_POOL]})
        for c in await docker_json(
            docker, "containers/json", params={"all": "1", "filters": filters}
        ):
            await docker_json(docker, f"containers/{c['Id']}", "DELETE", params={"force": "1"})
        vols = await docker_json(docker, "volumes", params={"filters": filters})
        for v in vols["Volumes"] or []:
            await docker_json(docker, f"volumes/{v['Name']}", "DELETE")


async def docker_json(docker: aiodocker.Docker, path: str, method: str = "GET", **kw: Any) -> Any:
    try:
        return await docker._query_json(path, method, **kw)
    except aiodocker.DockerError as exc:
        if exc.status == 404 or (exc.status == 409 and method == "DELETE"):
            return None  # gone, or being removed already (by the provider's archive)
        raise


async def inspect(machine_id: str) -> Any:
    async with aiodocker.Docker() as docker:
        return await docker_json(docker, f"containers/{container_name(machine_id)}/json")


async def home_of(machine_id: str) -> Path:
    """The host path of a container's home volume (the local engine's)."""
    async with aiodocker.Docker() as docker:
        # A claimed warm-pool container's home is the pool's volume: the one it mounts.
        info = await docker_json(docker, f"containers/{container_name(machine_id)}/json")
        mounted = [m["Name"] for m in (info or {}).get("Mounts") or [] if m.get("Name")]
        name = mounted[0] if mounted else volume_name(machine_id)
        vol = await docker_json(docker, f"volumes/{name}")
    assert vol is not None, f"no home volume for {machine_id}"
    return Path(vol["Mountpoint"])


async def volume_exists(machine_id: str) -> bool:
    async with aiodocker.Docker() as docker:
        return await docker_json(docker, f"volumes/{volume_name(machine_id)}") is not None
