"""``environments.list|build|delete`` through every service (gateway, the host's provisioner
over NATS, the real Docker engine): an instance's Dockerfile built on request, listed with the
machines that run it, refused removal while one does, removed once none does."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import aiodocker
import pytest

from contracts.errors import EnvironmentInUse, InvalidParams, NotFound
from contracts.gateway_env_builds import EnvironmentBuild
from contracts.gateway_environments import DockerfileSource, Environment
from fleet.client import FleetClient
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


async def _listed(stack: FleetClient, build_id: str) -> EnvironmentBuild | None:
    got = await stack.list_environments()
    return next((e for e in got.environments if e.id == build_id), None)


@pytest.mark.timeout(240)
async def test_build_list_and_remove_a_cached_environment(
    stack: FleetClient, tmp_path: Path
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
    with pytest.raises(EnvironmentInUse) as busy:
        await stack.delete_environment(built.id[:12])
    assert mid in busy.value.message
    assert busy.value.data == {"machines": [mid]}

    await stack.archive_machine(mid)
    await stack.wait_for(mid, ("archived",), timeout_s=60)
    gone = await stack.delete_environment(built.id)
    assert gone.image == f"fleetd-env:{built.id}"
    assert await _listed(stack, built.id) is None
    with pytest.raises(NotFound):
        await stack.delete_environment(built.id)
    with pytest.raises(InvalidParams) as bad:
        await stack.delete_environment("not-hex")
    assert bad.value.field == "$.environmentId"
