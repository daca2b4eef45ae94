"""Forking ``docker`` machines, a real engine and every service: the scenarios of test_fork.py
(tests/fork_checks.py: a home volume copied while the source is paused), and what only docker
has: a machine of an environment's image takes what it wrote outside its home (its container's
layer, committed in the same pause) to its forks and snapshots, even one claimed from its
environment's warm pool; each fork has a home, token and code volume of its own; and a layer
image goes with its last machine or snapshot, whatever the order they are archived in."""

from __future__ import annotations

import os
import stat

import aiodocker
import msgspec
import pytest

from base.version import SOURCE_ROOT
from contracts.bus.events import HomeCopy
from contracts.gateway.environments import Environment
from contracts.status import MachineStatus
from controlplane.bus import Bus
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from providers.docker import LABEL_POOL, LABEL_STACK, container_name
from providers.docker.copy import (
    LABEL_HOME_COPY,
    LABEL_LAYER,
    copy_record,
    layer_ref,
    snapshot_volume,
)
from providers.registry import docker_provider, stack_id
from services.provisioner.service import provisioner
from tests.docker_env import (
    docker_gateway,
    docker_image,
    docker_json,
    home_of,
    inspect,
    nats_server,
    remove_containers,
)
from tests.environments import BusyboxPool, out, ready
from tests.fork_checks import (
    fork_is_one_instant,
    forks_outlive_their_source,
    ready_forks,
    snapshot_makes_identical_machines,
    stop_and_start,
)
from tests.integration.test_warm_pool import docker_pooled
from tests.stop_checks import ready_machine
from tests.waiters import wait_until

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")


async def volumes_of(mid: str) -> set[str]:
    return {m["Name"] for m in (await inspect(mid))["Mounts"] if m.get("Name")}


@pytest.mark.timeout(300)
async def test_a_docker_fork_is_the_source_at_one_instant_and_the_source_keeps_running(
    stack: FleetClient,
) -> None:
    mid, fork, copied = await fork_is_one_instant(stack, "docker", home_of, cow=False)
    assert copied.took_ms >= copied.pause_ms
    assert not (await inspect(mid))["State"]["Paused"]
    # Its own home, code store and token: none of the source's volumes.
    assert len(await volumes_of(fork)) == 3
    assert not await volumes_of(fork) & await volumes_of(mid)


TRAPS = (
    "ln -s / root-link && ln -s /to to-helper && ln -s /etc/shadow shadow && mkfifo fifo && "
    "truncate -s 8G holes && echo data > data && ln data data-too && "
    "python3 -c \"import socket; socket.socket(socket.AF_UNIX).bind('sock')\""
)


@pytest.mark.timeout(300)
async def test_a_home_of_links_fifos_and_holes_forks_as_it_is(stack: FleetClient) -> None:
    """Links (to the host's root, to where the copy's helper mounts the fork's home), a FIFO,
    a socket, an 8 GiB file of holes and a hard link: each copied as what it is, nothing
    followed, read or filled."""
    mid = await ready_machine(stack, "traps", "docker")
    await out(stack, mid, "sh", "-c", TRAPS)
    [fork] = await ready_forks(stack, mid, 1)
    home = await home_of(fork)
    for link, target in (("root-link", "/"), ("to-helper", "/to"), ("shadow", "/etc/shadow")):
        assert os.readlink(home / link) == target
    kinds = {name: stat.S_IFMT(os.lstat(home / name).st_mode) for name in ("fifo", "sock")}
    assert kinds == {"fifo": stat.S_IFIFO, "sock": stat.S_IFSOCK}
    holes = os.lstat(home / "holes")
    assert (holes.st_size, holes.st_blocks) == (8 << 30, 0)
    assert os.lstat(home / "data").st_ino == os.lstat(home / "data-too").st_ino
    assert await out(stack, fork, "cat", "data-too") == "data\n"


async def test_a_source_left_paused_by_its_provisioners_end_is_resumed(
    stack: FleetClient, stack_settings: Settings, bus: Bus, store: Store
) -> None:
    """A provisioner that ends during a copy leaves the source paused; the next one's start
    (its resume of the host's machines) resumes it."""
    mid = await ready_machine(stack, "left-paused", "docker")
    async with aiodocker.Docker() as docker:
        await (await docker.containers.get(container_name(mid))).pause()
    async with docker_provider(stack_settings, SOURCE_ROOT) as provider:
        again = provisioner(store=store, bus=bus, providers={"docker": provider},
                            box=SecretBox(stack_settings.secret_key),
                            settings=stack_settings)  # fmt: skip
        await again.resume()
    assert not (await inspect(mid))["State"]["Paused"]
    assert (await stack.exec(mid, ["echo", "up"])).stdout == "up\n"


@pytest.mark.timeout(600)
async def test_docker_forks_of_a_stopped_machine_outlive_their_source(
    stack: FleetClient,
) -> None:
    await forks_outlive_their_source(stack, "docker", 10)


@pytest.mark.timeout(400)
async def test_two_docker_machines_from_a_snapshot_are_identical_and_outlive_it(
    stack: FleetClient,
) -> None:
    made = await snapshot_makes_identical_machines(stack, "docker", home_of, "copy")
    snapshot = (await home_copy_of(made[0])).source
    async with aiodocker.Docker() as docker:
        assert await docker_json(docker, f"volumes/{snapshot_volume(snapshot)}") is None


async def home_copy_of(mid: str) -> HomeCopy:
    async with aiodocker.Docker() as docker:
        vol = await docker_json(docker, f"volumes/{copy_record(mid)}")
    return msgspec.json.decode(vol["Labels"][LABEL_HOME_COPY], type=HomeCopy)


class TestEnvironmentLayer(BusyboxPool):
    """A machine of an environment's image, claimed from that environment's warm pool."""

    @pytest.mark.timeout(600)
    async def test_forks_and_snapshots_keep_what_it_wrote_outside_its_home(
        self, stack: FleetClient, stack_settings: Settings, busybox: str
    ) -> None:
        await docker_pooled(stack_settings)
        inst = await stack.create_instance("layered")
        await stack.set_environment(inst.id, Environment(image=busybox))
        mid = await ready(stack, inst.id, "docker")
        assert (await inspect(mid))["Config"]["Labels"].get(LABEL_POOL)  # from the pool
        await out(stack, mid, "sh", "-c", "echo source > /opt/tool && echo home > h.txt")

        # Several at once of the running source (they share its pause).
        forks = await ready_forks(stack, mid, 3)
        for f in forks:
            assert await out(stack, f, "cat", "/opt/tool", "h.txt") == "source\nhome\n"
            info = await inspect(f)
            assert info["Config"]["Image"] == layer_ref(f)
            assert not info["Config"]["Labels"].get(LABEL_POOL)  # not a pool's container
        await out(stack, forks[0], "sh", "-c", "echo fork > /opt/tool")
        assert await out(stack, mid, "cat", "/opt/tool") == "source\n"

        # A snapshot's layer outlives the source, and a machine made from it outlives the
        # snapshot; a fork of a fork outlives its source.
        snap = await stack.snapshot_machine(mid, "layered")
        [grandchild] = await ready_forks(stack, forks[1], 1)
        for gone in (mid, forks[1]):
            await stack.archive_machine(gone)
            await stack.wait_for(gone, ("archived",), timeout_s=60)
        made = await stack.create_from_snapshot(inst.id, snap.id)
        done = await stack.wait_for(made.id, ("ready", "failed"), timeout_s=120)
        assert done.status is MachineStatus.READY, done.status_reason
        assert await stack.delete_snapshot(snap.id)
        for m in (made.id, grandchild):
            await stop_and_start(stack, m)
            assert await out(stack, m, "cat", "/opt/tool", "h.txt") == "source\nhome\n"

        # Every layer image goes with the last machine that runs it.
        for m in (made.id, grandchild, *forks[::2]):
            await stack.archive_machine(m)
        for m in (made.id, grandchild, *forks[::2]):
            await stack.wait_for(m, ("archived",), timeout_s=60)
        await wait_until(lambda: no_layers(stack_settings), timeout=30, every=0.5)


async def no_layers(settings: Settings) -> bool:
    ours = f"{LABEL_STACK}={stack_id(settings)}"
    async with aiodocker.Docker() as docker:
        return not await docker.images.list(all=True, filters={"label": [LABEL_LAYER, ours]})
