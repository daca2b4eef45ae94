"""A machine of an environment's image, ``docker`` provider, a real engine and every service:
a static busybox image (no libc, no Python, no fleet user) runs the platform's daemon from
its read-only runtime; exec, files, a terminal and a port work; nothing of the runtime is in
its commands' environment; what it writes outside its home survives stop/start and goes with
archive; an image the engine lacks fails the machine at stage ``environment``."""

from __future__ import annotations

from pathlib import Path

import aiodocker
import pytest

from contracts.errors import InvalidParams
from contracts.gateway_environments import DockerfileSource, Environment
from contracts.status import MachineStatus
from fleet.client import FleetClient
from providers.docker_names import LABEL_POOL
from services.common.settings import Settings
from tests.docker_env import docker_gateway, docker_image, inspect, nats_server, remove_containers
from tests.environments import (
    BusyboxPool,
    busybox_image,
    files_terminal_and_port,
    out,
    preloading_machine,
    ready,
    refresh_code_runs,
    stop_start_keeps_what_it_wrote,
)
from tests.integration.test_docker_warm_pool import pooled
from tests.stop_checks import ready_machine
from tests.waiters import wait_until

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")


@pytest.mark.timeout(300)
async def test_a_busybox_image_machine(stack: FleetClient, tmp_path: Path) -> None:
    async with aiodocker.Docker() as docker:
        tag = await busybox_image(docker)
        image_id = (await docker.images.inspect(tag))["Id"]
    inst = await stack.create_instance("busybox-env")
    with pytest.raises(InvalidParams) as bad:  # a repo the instance does not have
        await stack.set_environment(inst.id, Environment(dockerfile=DockerfileSource(repo="x")))
    assert bad.value.field == "$.environment.dockerfile.repo"
    got = await stack.set_environment(inst.id, Environment(image=tag))
    assert got.environment == Environment(image=tag)

    mid = await ready(stack, inst.id, "docker")
    m = await stack.get_machine(mid)
    assert (m.environment, m.environment_image) == (f"image {tag}", image_id)
    assert (await out(stack, mid, "id", "-u")).strip() == "1000"
    env = await out(stack, mid, "env")
    for leaked in ("PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH", "FLEET_RUNTIME_LIBS"):
        assert leaked not in env
    assert (await stack.exec(mid, ["test", "-e", "/usr/bin/python3"])).exit_code != 0
    # The runtime is read-only, to root too.
    assert (await stack.exec(mid, ["sh", "-c", "echo x > /run/fleet/runtime/lib/x"])).exit_code

    await files_terminal_and_port(stack, mid, tmp_path)

    # The platform's newer code: the daemon re-executes through the runtime's loader.
    await refresh_code_runs(stack, mid)

    # Outside its home: kept across stop/start, gone with archive.
    await stop_start_keeps_what_it_wrote(stack, mid, "docker")


@pytest.mark.timeout(300)
async def test_an_images_preload_never_runs_as_root(stack: FleetClient, tmp_path: Path) -> None:
    """An image whose /etc/ld.so.preload and whose config's LD_PRELOAD name its own library:
    the container's first process is the machine's user, and the platform's supervisor and
    daemon never run the library (they hold the token)."""
    mid = await preloading_machine(stack, tmp_path, "docker")
    # The image's LD_PRELOAD is its commands' (their programs are the image's).
    assert await out(stack, mid, "sh", "-c", "echo $LD_PRELOAD") == "/lib/fleet-test-preload.so\n"
    # The token's file, the machine user's to read: spent before any of its commands ran.
    assert await out(stack, mid, "cat", "/run/fleet/secret/token") == ""
    async with aiodocker.Docker() as docker:
        [c] = await docker.containers.list(filters={"label": [f"fleet.machine={mid}"]})
        assert (await c.show())["Config"]["User"] == "1000:1000"
    await stack.archive_machine(mid)


@pytest.mark.timeout(300)
async def test_a_container_its_engine_starts_again_waits_for_the_providers_start(
    stack: FleetClient,
) -> None:
    """The token's file is spent at the supervisor's start: a container its engine starts
    again by itself gets no token, says so and ends; the machine's next start writes a new one,
    and it serves again, with what it wrote outside its home."""
    async with aiodocker.Docker() as docker:
        tag = await busybox_image(docker)
    inst = await stack.create_instance("engine-restart")
    await stack.set_environment(inst.id, Environment(image=tag))
    mid = await ready(stack, inst.id, "docker")
    await out(stack, mid, "sh", "-c", "echo kept > /opt/kept")
    async with aiodocker.Docker() as docker:
        [c] = await docker.containers.list(filters={"label": [f"fleet.machine={mid}"]})
        await c.restart(timeout=5)

        async def spent() -> bool:
            return "supervisor: token_spent" in "".join(await c.log(stderr=True, tail=50))

        await wait_until(spent, timeout=60, every=0.5)
    await stack.stop_machine(mid)
    await stack.wait_for(mid, ("stopped",), timeout_s=120)
    await stack.start_machine(mid)
    again = await stack.wait_for(mid, ("ready", "failed"), timeout_s=120)
    assert again.status is MachineStatus.READY, again.status_reason
    assert await out(stack, mid, "cat", "/opt/kept") == "kept\n"
    await stack.archive_machine(mid)


@pytest.mark.timeout(120)
async def test_an_image_the_engine_lacks_fails_the_machine(stack: FleetClient) -> None:
    inst = await stack.create_instance("no-such-image")
    await stack.set_environment(inst.id, Environment(image="fleet-test-none:absent"))
    m = await stack.create_machine(inst.id, "docker")
    done = await stack.wait_for(m.id, ("ready", "failed"), timeout_s=60)
    assert done.status is MachineStatus.FAILED
    assert done.status_reason.startswith("environment failed: ImageNotFound:")
    assert "fleet-test-none:absent" in done.status_reason
    # A build from a repo the host cannot fetch: refused by name, at the same stage.
    await stack.add_repo(inst.id, url="http://127.0.0.1:9/app.git", branch="main", path="app")
    await stack.set_environment(inst.id, Environment(dockerfile=DockerfileSource(repo="app")))
    m = await stack.rebuild_machine(inst.id)
    done = await stack.wait_for(m.id, ("ready", "failed"), timeout_s=60)
    assert done.status_reason.startswith("environment failed: EnvironmentInvalid:")
    await stack.set_environment(inst.id, None)  # back to the default
    assert (await stack.get_environment(inst.id)).environment is None
    await ready_machine(stack, "default-env", "docker")


class TestEnvironmentPool(BusyboxPool):
    """``FLEET_WARM_POOL=docker@IMAGE=1``: a machine of that environment is claimed warm."""

    @pytest.mark.timeout(180)
    async def test_a_machine_of_the_environment_comes_from_its_pool(
        self, stack: FleetClient, stack_settings: Settings, busybox: str
    ) -> None:
        await pooled(stack_settings)
        inst = await stack.create_instance("pooled-env")
        await stack.set_environment(inst.id, Environment(image=busybox))
        mid = await ready(stack, inst.id, "docker")
        assert LABEL_POOL in (await inspect(mid))["Config"]["Labels"]
        assert (await out(stack, mid, "id", "-u")).strip() == "1000"
        assert (await stack.get_machine(mid)).environment == f"image {busybox}"
        other = await stack.create_instance("default-env")  # the default is not that pool's
        default = await ready(stack, other.id, "docker")
        assert LABEL_POOL not in (await inspect(default))["Config"]["Labels"]
