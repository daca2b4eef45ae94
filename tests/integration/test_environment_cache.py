"""``environments.list|build|delete`` through every service (gateway, the host's provisioner
over NATS, the real Docker engine), by the client and by the `fleet environments` CLI: an
instance's Dockerfile built on request, listed with the machines that run it, refused removal
while one does, removed once none does."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import aiodocker
import pytest

from contracts.errors import EnvironmentInUse, InvalidParams, NotFound
from contracts.gateway.env_builds import EnvironmentBuild
from contracts.gateway.environments import DockerfileSource, Environment
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN
from tests.docker_env import docker_gateway, docker_image, nats_server, remove_containers
from tests.environments import busybox_image, out, ready

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")


def _origin(tmp_path: Path, dockerfile: str) -> Path:
    origin = tmp_path / "origin"
    git = ["git", "-C", str(origin), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(origin)], check=True)
    (origin / "Dockerfile").write_text(dockerfile)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "env"], check=True)
    return origin


def _fleet(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLEET_URL": f"http://127.0.0.1:{settings.port}",
           "FLEET_TOKEN": ADMIN_TOKEN}  # fmt: skip
    argv = [sys.executable, "-c", "from fleet.cli.entry import main; main()", "environments", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


async def _listed(stack: FleetClient, build_id: str) -> EnvironmentBuild | None:
    got = await stack.list_environments()
    return next((e for e in got.environments if e.id == build_id), None)


@pytest.mark.timeout(240)
async def test_build_list_and_remove_a_cached_environment(
    stack: FleetClient, settings: Settings, tmp_path: Path
) -> None:
    async with aiodocker.Docker() as docker:
        base = await busybox_image(docker)
    marker = uuid.uuid4().hex  # its own content hash: no other test's build
    origin = _origin(tmp_path, f"FROM {base}\nRUN echo {marker} > /etc/marker\n")
    inst = await stack.create_instance("env-cache")
    with pytest.raises(InvalidParams) as bad:  # nothing set: nothing to build now
        await stack.build_environment(inst.id)
    assert bad.value.field == "$.instanceId"
    await stack.add_repo(inst.id, url=str(origin), branch="main", path="app")
    await stack.set_environment(inst.id, Environment(dockerfile=DockerfileSource(repo="app")))

    built = await stack.build_environment(inst.id)
    assert built.environment == "dockerfile app:Dockerfile (context .)"
    assert built.image_id.startswith("sha256:")
    again = await stack.build_environment(inst.id)  # the cache's
    assert (again.id, again.image_id) == (built.id, built.image_id)
    entry = await _listed(stack, built.id)
    assert entry is not None
    assert (entry.image, entry.image_id, entry.machines) == (
        f"fleetd-env:{built.id}", built.image_id, [],
    )  # fmt: skip
    assert entry.size > 0

    # A machine of the build (by its image): listed with it, and the build kept.
    await stack.remove_repo(inst.id, "app")
    await stack.set_environment(inst.id, Environment(image=entry.image))
    mid = await ready(stack, inst.id, "docker")
    assert (await out(stack, mid, "cat", "/etc/marker")).strip() == marker
    entry = await _listed(stack, built.id)
    assert entry is not None
    assert (entry.machines, entry.instances) == ([mid], [inst.id])
    listed = await asyncio.to_thread(_fleet, settings, "list")
    row = next(line for line in listed.stdout.splitlines() if line.startswith(built.id[:12]))
    assert inst.id in row, listed.stdout
    assert mid in row, listed.stdout
    with pytest.raises(EnvironmentInUse) as busy:
        await stack.delete_environment(built.id[:12])
    assert mid in busy.value.message
    assert busy.value.data == {"machines": [mid]}
    refused = await asyncio.to_thread(_fleet, settings, "rm", built.id[:12])
    assert refused.returncode != 0
    assert f"error 1629: environment build fleetd-env:{built.id} is in use" in refused.stderr

    await stack.archive_machine(mid)
    await stack.wait_for(mid, ("archived",), timeout_s=60)
    gone = await asyncio.to_thread(_fleet, settings, "rm", built.id)
    assert gone.returncode == 0, gone.stderr
    assert gone.stdout.strip() == f"removed fleetd-env:{built.id}"
    assert await _listed(stack, built.id) is None
    with pytest.raises(NotFound):
        await stack.delete_environment(built.id)
    with pytest.raises(InvalidParams) as bad:
        await stack.delete_environment("not-hex")
    assert bad.value.field == "$.environmentId"
