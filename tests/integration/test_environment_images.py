"""The images an instance's environment may use on the shared Docker engine (the provisioner's
image_policy.py), against the real engine and valkey: another instance's fork layer and build,
and any image named by its ID or an ID's prefix, are refused by name (1611 ImageRefused) in
``environments.build`` and at a machine's resolution, a Dockerfile's FROM and --from included,
the same whether or not the engine has them; registry-named images, the platform's own and the
instance's own layers and builds are not."""

from __future__ import annotations

import io
import secrets
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest

from contracts.errors import ImageNotFound, ImageRefused
from contracts.gateway import env_builds as geb
from contracts.gateway.environments import DockerfileSource, Environment
from contracts.models import Repo
from contracts.status import MachineStatus
from controlplane.bus import Bus
from controlplane.settings import Settings
from controlplane.store import Store
from environments.shared_builds import SharedBuilds
from fleet.client import FleetClient
from services.provisioner.builds.environment import EnvironmentContext, resolve_image
from services.provisioner.builds.environment_builds import EnvironmentBuilds
from tests.docker_env import docker_gateway, docker_image, nats_server, remove_containers
from tests.environments import busybox_image, shared
from tests.gitcmd import repo_with

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers", "shared"]


@pytest.fixture
async def docker() -> AsyncIterator[aiodocker.Docker]:
    async with aiodocker.Docker() as d:
        yield d


@pytest.fixture
async def others(docker: aiodocker.Docker) -> AsyncIterator[tuple[str, str, str]]:
    """Another instance's fork layer and build, as the platform tags them (of busybox), and
    their image ID."""
    base = await busybox_image(docker)
    layer, build = f"m-{secrets.token_hex(8)}", secrets.token_hex(16)
    await docker.images.tag(base, "fleetd-layer", tag=layer)
    await docker.images.tag(base, "fleetd-env", tag=build)
    image_id = str((await docker.images.inspect(base))["Id"])
    yield f"fleetd-layer:{layer}", f"fleetd-env:{build}", image_id
    for ref in (f"fleetd-layer:{layer}", f"fleetd-env:{build}"):
        await docker.images.delete(ref)


async def _built(docker: aiodocker.Docker, tag: str, dockerfile: str) -> None:
    """``dockerfile`` built on the engine as ``tag`` (as a registry's image would be pulled):
    its ONBUILD lines are kept for a build FROM it, not run."""
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w") as tar:
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    body.seek(0)
    await docker.images.build(fileobj=body, encoding="application/x-tar", tag=tag)


@pytest.mark.timeout(120)
async def test_an_instance_uses_no_other_instances_image(
    docker: aiodocker.Docker, others: tuple[str, str, str], settings: Settings, store: Store,
    bus: Bus, shared: SharedBuilds, tmp_path: Path,
) -> None:  # fmt: skip
    layer, build, image_id = others
    inst = await store.create_instance("attacker")
    builds = EnvironmentBuilds(store, settings, lambda: docker, shared)
    machine = await store.create_machine(inst.id, "docker")
    ctx = EnvironmentContext(store, bus, machine, docker, "e-1", settings, shared=shared)
    refused = [
        layer, f"docker.io/library/{layer}", f"index.docker.io/library/{layer}", build,
        f"docker.io/{build}", image_id, image_id.removeprefix("sha256:"),
        image_id.removeprefix("sha256:")[:12], f"fleetd-layer:m-{secrets.token_hex(8)}",
        f"fleetd-env:{secrets.token_hex(16)}",  # one the engine lacks: the same answer
    ]  # fmt: skip
    for ref in refused:
        env = Environment(image=ref)
        await store.environments.set_of_instance(inst.id, env)
        with pytest.raises(ImageRefused) as err:
            await builds.build(geb.BuildEnvironmentParams(instance_id=inst.id), None)
        assert image_id not in err.value.message.replace(ref, "")  # not told it
        assert err.value.data == {"image": ref}
        with pytest.raises(ImageRefused):
            await resolve_image(ctx, env)

    # A Dockerfile that starts from, or copies out of, another instance's layer.
    for n, dockerfile in enumerate((f"FROM {layer}\n", f"ARG L={layer}\nFROM $L\n",
                                    f"FROM scratch\nCOPY --from={layer} /bin/busybox /x\n",
                                    "FROM scratch\nCOPY --from=$NOWHERE / /\n")):  # fmt: skip
        path = f"app{n}"
        work = repo_with(tmp_path / path, {"Dockerfile": dockerfile}, "env")
        await store.add_repo(inst.id, Repo(url=str(work), branch="main", path=path))
        env = Environment(dockerfile=DockerfileSource(repo=path))
        await store.environments.set_of_instance(inst.id, env)
        with pytest.raises(ImageRefused):
            await builds.build(geb.BuildEnvironmentParams(instance_id=inst.id), None)
        with pytest.raises(ImageRefused):
            await resolve_image(ctx, env)

    # A registry image whose ONBUILD trigger copies out of the layer, in a build FROM it.
    trap = f"fleet-test-onbuild:{secrets.token_hex(6)}"
    await _built(docker, trap, f"FROM {await busybox_image(docker)}\n"
                               f"ONBUILD COPY --from={layer} /bin/busybox /stolen\n")  # fmt: skip
    try:
        work = repo_with(tmp_path / "onbuild", {"Dockerfile": f"FROM {trap}\n"}, "env")
        await store.add_repo(inst.id, Repo(url=str(work), branch="main", path="onbuild"))
        env = Environment(dockerfile=DockerfileSource(repo="onbuild"))
        await store.environments.set_of_instance(inst.id, env)
        with pytest.raises(ImageRefused):
            await builds.build(geb.BuildEnvironmentParams(instance_id=inst.id), None)
    finally:
        await docker.images.delete(trap)

    # What it may use: a registry-named image, and a layer of its own machine's.
    base = await busybox_image(docker)
    own = f"fleetd-layer:{machine.id}"
    await docker.images.tag(base, "fleetd-layer", tag=machine.id)
    try:
        for ref in (base, f"docker.io/library/{base}", own):
            assert (await resolve_image(ctx, Environment(image=ref))).image == image_id
    finally:
        await docker.images.delete(own)
    with pytest.raises(ImageNotFound):
        await resolve_image(ctx, Environment(image=f"fleet-test-none:{secrets.token_hex(4)}"))


@pytest.mark.timeout(180)
@pytest.mark.usefixtures("remove_containers")
async def test_through_the_gateway_another_instances_layer_is_refused(
    stack: FleetClient, others: tuple[str, str, str]
) -> None:
    """As a tenant drives it: environments.build answers 1611 without the layer's ID, and a
    docker machine of that environment fails at stage environment, no container made."""
    layer, _, image_id = others
    inst = await stack.create_instance("attacker")
    await stack.set_environment(inst.id, Environment(image=layer))
    with pytest.raises(ImageRefused) as err:
        await stack.build_environment(inst.id)
    assert err.value.code == 1611
    assert image_id not in err.value.message
    m = await stack.create_machine(inst.id, "docker")
    done = await stack.wait_for(m.id, ("ready", "failed"), timeout_s=120)
    assert done.status is MachineStatus.FAILED
    assert done.status_reason.startswith("environment failed: ImageRefused: "), done.status_reason
    assert done.environment_image is None
