"""What the docker provider's tests share: the engine (DOCKER_HOST's or the local one, which
``./run test`` starts), the machine image built once per session, NATS on the machines'
network, and the containers' host-side facts (home volume, daemon pid). No skipping: without
an engine these fixtures fail, naming what is missing."""

from __future__ import annotations

import asyncio
import fcntl
import functools
import json
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiodocker
import pytest

from contracts.errors import ProviderError
from controlplane.settings import Settings
from fleet.up import NatsServer, prepare
from providers.docker import MACHINE_HOME
from providers.docker.code import code_volume, secret_volume
from providers.docker.copy import LABEL_LAYER
from providers.docker.names import LABEL_MACHINE, LABEL_STACK, container_name, volume_name

#: Where the machine image is built (its debootstrap's scratch directories, the root file
#: system's tar until imported), shared by every run on this host under BUILD_LOCK: a build
#: killed half way (SIGKILL: no cleanup ran) is swept by the next one, never left to a pytest
#: base temp dir's plain removal.
BUILD_DIR = Path(tempfile.gettempdir()) / "fleetd-tests-image-build"
BUILD_LOCK = Path(tempfile.gettempdir()) / "fleetd-tests-docker-image.lock"


def build_image(prefix: str) -> tuple[str, str]:
    """(the machines' network gateway, the machine image), built if this engine lacks it, each
    step printed on stderr after ``prefix``. One build at a time on this host: the engine's image
    tags are global, and another run (another worktree's suite, an xdist worker outside the
    docker group) may be building the same one; the second finds it built."""
    with open(BUILD_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        built = asyncio.run(prepare(Settings(data_dir=str(BUILD_DIR)), prefix))
        # What runs killed before their teardown left (remove_containers removes only a
        # test's own): their data dirs are gone.
        asyncio.run(_remove_stacks(_orphaned))
        return built


@functools.cache
def _image_of_this_process() -> tuple[str, str]:
    """``build_image`` once per pytest process: each module that imports ``docker_image`` has
    a session fixture of its own (pytest keys a fixture by where it is defined), and finding
    the image built takes the engine half a second."""
    return build_image("tests")


@pytest.fixture(scope="session")
def docker_image() -> tuple[str, str]:
    """(the machines' network gateway, the machine image). ``./run test`` builds it before the
    tests start (``python -m tests.docker_env``), so that its first build, minutes long on a new
    host, never runs under a test's timeout; here it is found built."""
    try:
        return _image_of_this_process()
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
def remove_containers(tmp_path: Path) -> Iterator[None]:
    """The fleet containers and home volumes this test made are removed after it: those of a
    stack (a data dir) under its tmp_path. Not the engine's others: another xdist worker's, or
    another checkout's suite on this host, may be using theirs."""
    yield
    asyncio.run(remove_stacks_under(tmp_path))


async def remove_stacks_under(tmp_path: Path) -> None:
    """What ``remove_containers`` removes, for a fixture that must have it gone sooner (an
    image its containers use cannot be removed)."""
    await _remove_stacks(lambda stack: Path(stack).is_relative_to(tmp_path))


def _orphaned(stack: str) -> bool:
    """A stack of a pytest session that is over: the session's base temp dir
    (``.../pytest-of-<user>/pytest-<n>``, kept while its session runs) is gone. Never a data dir
    a running test has not made yet."""
    for parent in Path(stack).parents:
        if parent.name.startswith("pytest-") and parent.parent.name.startswith("pytest-of-"):
            return not parent.exists()
    return False


async def _remove_stacks(which: Callable[[str], bool]) -> None:
    async with aiodocker.Docker() as docker:
        filters = json.dumps({"label": [LABEL_STACK]})
        for c in await docker_json(
            docker, "containers/json", params={"all": "1", "filters": filters}
        ):
            if not which(c["Labels"][LABEL_STACK]):
                continue
            await docker_json(docker, f"containers/{c['Id']}", "DELETE", params={"force": "1"})
            if mid := c["Labels"].get(LABEL_MACHINE):
                await _remove_home(docker, volume_name(mid))
        # The warm pool's (a claimed machine's home is the pool's volume): labelled with it.
        vols = await docker_json(docker, "volumes", params={"filters": filters})
        for v in (vols or {}).get("Volumes") or []:
            if which((v.get("Labels") or {}).get(LABEL_STACK, "")):
                await _remove_home(docker, v["Name"])
        await _remove_layers(docker, which)


async def _remove_layers(docker: aiodocker.Docker, which: Callable[[str], bool]) -> None:
    """The forks' and snapshots' layer images (providers/docker/copy.py) of the stacks: each
    tag removed, newest first (an image goes with its last tag, and takes along the older ones
    it was committed over once nothing else is)."""
    filters = json.dumps({"label": [LABEL_LAYER]})
    images = await docker_json(docker, "images/json", params={"filters": filters}) or []
    for image in sorted(images, key=lambda i: -int(i["Created"])):
        if which((image.get("Labels") or {}).get(LABEL_STACK, "")):
            for tag in set(image.get("RepoTags") or []) - {"<none>:<none>"}:
                await docker_json(docker, f"images/{tag}", "DELETE")


async def _remove_home(docker: aiodocker.Docker, name: str) -> None:
    """A home volume and the platform's volumes beside it (providers/docker/code.py)."""
    for each in (name, code_volume(name), secret_volume(name)):
        await docker_json(docker, f"volumes/{each}", "DELETE")


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
        mounted = [m["Name"] for m in (info or {}).get("Mounts") or []
                   if m.get("Name") and m.get("Destination") == MACHINE_HOME]  # fmt: skip
        name = mounted[0] if mounted else volume_name(machine_id)
        vol = await docker_json(docker, f"volumes/{name}")
    assert vol is not None, f"no home volume for {machine_id}"
    return Path(vol["Mountpoint"])


async def volume_exists(machine_id: str) -> bool:
    async with aiodocker.Docker() as docker:
        return await docker_json(docker, f"volumes/{volume_name(machine_id)}") is not None


def main() -> int:
    """``./run test``'s set-up, before pytest starts: what stops it is one line, not a trace."""
    try:
        build_image("./run test: machine image")
    except (ProviderError, aiodocker.DockerError) as exc:
        print(f"./run test: the machine image could not be built: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


def home_volume(info: Any) -> str:
    """The name of the volume a container (``inspect``'s answer) has as the machine's home:
    it has others (its code store, its token's), in no set order."""
    return next(m["Name"] for m in info["Mounts"] if m["Destination"] == MACHINE_HOME)
