"""A machine of an environment's image on each provider (``local``: bubblewrap, ``docker``), a
real engine and every service: a static busybox image (no libc, no Python, no fleet user) in
place of the host's system runs the platform's daemon from its read-only runtime; exec, files,
a terminal and a port work; nothing of the runtime is in its commands' environment; what it
writes outside its home survives stop/start and goes with archive; the image's
/etc/ld.so.preload never runs as root. A local machine's image root is unpacked once per image
ID, under an overlay of the machine's own, which its forks and snapshots copy; a docker
machine's container its engine restarts waits for the provider's start, and an image the
engine lacks fails the machine at stage ``environment``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from pathlib import Path

import aiodocker
import pytest

from contracts.errors import InvalidParams
from contracts.gateway.environments import DockerfileSource, Environment
from contracts.status import MachineStatus
from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.docker import LABEL_POOL
from providers.sandbox import MachineCgroup
from tests.docker_env import docker_gateway, docker_image, inspect, remove_containers
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
from tests.hostile import Canary
from tests.integration.test_warm_pool import docker_pooled
from tests.provider_param import nats_server, provider
from tests.stop_checks import ready_machine
from tests.waiters import wait_until

__all__ = ["docker_gateway", "docker_image", "nats_server", "provider", "remove_containers"]
LOCAL = pytest.mark.parametrize("provider", ["local"])
DOCKER = pytest.mark.parametrize("provider", ["docker"])
#: A directory of the platform's runtime in each provider's machine of an image.
RUNTIME_LIB = {"local": "/run/fleet/runtime/libs", "docker": "/run/fleet/runtime/lib"}


@pytest.mark.timeout(300)
async def test_a_busybox_image_machine(stack: FleetClient, tmp_path: Path, provider: str) -> None:
    async with aiodocker.Docker() as docker:
        tag = await busybox_image(docker)
        image_id = (await docker.images.inspect(tag))["Id"]
    inst = await stack.create_instance(f"busybox-{provider}")
    with pytest.raises(InvalidParams) as bad:  # a repo the instance does not have
        await stack.set_environment(inst.id, Environment(dockerfile=DockerfileSource(repo="x")))
    assert bad.value.field == "$.environment.dockerfile.repo"
    got = await stack.set_environment(inst.id, Environment(image=tag))
    assert got.environment == Environment(image=tag)

    mid = await ready(stack, inst.id, provider)
    m = await stack.get_machine(mid)
    assert (m.environment, m.environment_image) == (f"image {tag}", image_id)
    # The image's system, not the host's: no Python, busybox's ls.
    assert (await stack.exec(mid, ["test", "-e", "/usr/bin/python3"])).exit_code == 1
    env = await out(stack, mid, "env")
    for leaked in ("PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH", "FLEET_RUNTIME_LIBS"):
        assert leaked not in env
    assert "busybox" in await out(stack, mid, "sh", "-c", "ls -l /bin/ls")
    assert (await out(stack, mid, "sh", "-c", "echo $HOME; pwd")).split() == ["/home/fleet"] * 2
    await stack.write_file(mid, "notes.txt", "in the home\n")
    assert await out(stack, mid, "cat", "/home/fleet/notes.txt") == "in the home\n"
    # The runtime is read-only, to root too (it is there: the write fails for that reason).
    lib = RUNTIME_LIB[provider]
    assert (await stack.exec(mid, ["test", "-d", lib])).exit_code == 0
    assert (await stack.exec(mid, ["sh", "-c", f"echo x > {lib}/x"])).exit_code
    if provider == "docker":  # the image has no user: the machine's own uid, named fleet
        uid = int((await out(stack, mid, "id", "-u")).strip())
        assert uid != 1000
        assert (await out(stack, mid, "id", "-un")).strip() == "fleet"

    await files_terminal_and_port(stack, mid, tmp_path)
    # The platform's newer code: the daemon re-executes through the runtime's loader.
    await refresh_code_runs(stack, mid)
    if provider == "local":
        await forks_and_snapshots_keep_what_it_wrote(stack, mid)
    # Outside its home: kept across stop/start, gone with archive.
    await stop_start_keeps_what_it_wrote(stack, mid, provider)


async def busybox_machine(stack: FleetClient, name: str, provider: str) -> str:
    """A ready machine of a new instance ``name`` whose environment is the busybox image."""
    async with aiodocker.Docker() as docker:
        tag = await busybox_image(docker)
    inst = await stack.create_instance(name)
    await stack.set_environment(inst.id, Environment(image=tag))
    return await ready(stack, inst.id, provider)


async def forks_and_snapshots_keep_what_it_wrote(stack: FleetClient, mid: str) -> None:
    """A fork, and a machine made from a snapshot, have what the source wrote outside its home
    (its overlay) as of the fork; writes there do not cross, and none needs the other."""
    await out(stack, mid, "sh", "-c", "echo before > /opt/forked")
    [fork] = await stack.fork_machine(mid, 1)
    assert (
        await stack.wait_for(fork.id, ("ready", "failed"), timeout_s=120)
    ).status.value == "ready"
    assert await out(stack, fork.id, "cat", "/opt/forked") == "before\n"
    await out(stack, fork.id, "sh", "-c", "echo fork > /opt/forked")
    assert await out(stack, mid, "cat", "/opt/forked") == "before\n"
    snap = await stack.snapshot_machine(mid, "with-opt")
    await out(stack, mid, "sh", "-c", "echo after > /opt/forked")
    made = await stack.create_from_snapshot(fork.instance_id, snap.id)
    assert (
        await stack.wait_for(made.id, ("ready", "failed"), timeout_s=120)
    ).status.value == "ready"
    assert await stack.delete_snapshot(snap.id)
    assert await out(stack, made.id, "cat", "/opt/forked") == "before\n"
    assert await out(stack, fork.id, "cat", "/opt/forked") == "fork\n"
    for other in (fork.id, made.id):
        await stack.archive_machine(other)


@pytest.mark.timeout(300)
async def test_an_images_preload_never_runs_as_root(
    stack: FleetClient, tmp_path: Path, provider: str
) -> None:
    """An image whose /etc/ld.so.preload (and, in its config, LD_PRELOAD) names its own
    library: neither the sandbox's or container's first process (started by root) nor the
    platform's supervisor and daemon (they hold the token) run it; whatever of the machine's
    does runs as the machine's user."""
    mid = await preloading_machine(stack, tmp_path, provider)
    if provider == "local":
        # Its own user namespace: not the host's identity map.
        uid_map = (await out(stack, mid, "cat", "/proc/self/uid_map")).split()
        assert uid_map != ["0", "0", "4294967295"]
    else:
        await docker_preload_is_the_users(stack, mid)
    await stack.archive_machine(mid)


async def docker_preload_is_the_users(stack: FleetClient, mid: str) -> None:
    """The container's first process is the machine's user; the image's LD_PRELOAD is its
    commands' (their programs are the image's)."""
    assert await out(stack, mid, "sh", "-c", "echo $LD_PRELOAD") == "/lib/fleet-test-preload.so\n"
    # The token's file, the machine user's to read: spent before any of its commands ran.
    assert await out(stack, mid, "cat", "/run/fleet/secret/token") == ""
    async with aiodocker.Docker() as docker:
        [c] = await docker.containers.list(filters={"label": [f"fleet.machine={mid}"]})
        uid = (await out(stack, mid, "id", "-u")).strip()  # its own, never 0
        assert (await c.show())["Config"]["User"] == f"{uid}:{uid}"
        assert uid not in ("0", "1000")


def lose_cgroup(machine_id: str) -> None:
    """The machine's cgroups gone while it runs (as a host whose freeze cannot work): every
    process moved to its hierarchy's root group, then the groups removed."""
    group = MachineCgroup(machine_id)
    assert group.exists()
    while pids := group.pids():
        for pid, d in ((p, d) for p in pids for d in group.dirs):
            with contextlib.suppress(ProcessLookupError, OSError):
                (d.parent.parent / "cgroup.procs").write_text(str(pid))
    for d in group.dirs:
        d.rmdir()
    assert not group.exists()


@LOCAL
@pytest.mark.timeout(300)
async def test_a_fork_of_a_machine_that_cannot_be_frozen_is_refused(
    stack: FleetClient, provider: str
) -> None:
    """Root copies a fork's overlay (its source's writes outside its home: root's files,
    whiteouts); only a frozen source cannot swap a link into it under the copy. A running
    source with no cgroup to freeze: the fork fails, naming why, and nothing is copied; the
    source runs on."""
    mid = await busybox_machine(stack, "unfrozen-local", provider)
    await out(stack, mid, "sh", "-c", "echo mine > /opt/kept")
    await asyncio.to_thread(lose_cgroup, mid)
    [fork] = await stack.fork_machine(mid, 1)
    done = await stack.wait_for(fork.id, ("ready", "failed"), timeout_s=120)
    assert done.status is MachineStatus.FAILED
    assert "none of its cgroups" in (done.status_reason or ""), done.status_reason
    assert await out(stack, mid, "cat", "/opt/kept") == "mine\n"
    await stack.archive_machine(mid)


@LOCAL
@pytest.mark.timeout(300)
async def test_a_forks_copy_of_an_overlay_follows_nothing_the_machine_planted(
    stack: FleetClient, settings: Settings, tmp_path: Path, provider: str
) -> None:
    """Root copies a fork's overlay: the source plants there a link to a host directory, one
    to a host file and a FIFO, and swaps a directory with a link to the host directory in a
    loop. Each fork has the links as links, and nothing of the host's files; those are
    unchanged."""
    canary = Canary(tmp_path / "host-secrets")
    mid = await busybox_machine(stack, "hostile-overlay", provider)
    plant = (f"mkdir -p /opt/h/d && cd /opt/h && ln -s {canary.root} l && "
             f"ln -s {canary.root} dirlink && ln -s {canary.a_file} link && mkfifo fifo && "
             "i=0; while [ $i -lt 200 ]; do : > d/f$i; i=$((i+1)); done; echo planted")  # fmt: skip
    assert (await out(stack, mid, "sh", "-c", plant)).endswith("planted\n")
    swap = "cd /opt/h && echo swapping && while :; do mv d t; mv l d; mv d l; mv t d; done"
    await stack.start_process(mid, ["sh", "-c", swap], tag="swap")
    for _ in range(3):
        [fork] = await stack.fork_machine(mid, 1)
        done = await stack.wait_for(fork.id, ("ready", "failed"), timeout_s=120)
        assert done.status is MachineStatus.READY, done.status_reason
        # The fork runs the source's recorded processes, the swap included: read by descriptor.
        copied = await asyncio.to_thread(contents, settings.data_path / "machines" / fork.id)
        assert copied, "the fork has none of the source's overlay"
        assert not [path for path, data in copied.items() if b"root-only" in data]
        kinds = await out(stack, fork.id, "sh", "-c", "cd /opt/h && ls -ld dirlink fifo link")
        assert [line[0] for line in kinds.splitlines()] == ["l", "p", "l"], kinds
        await stack.archive_machine(fork.id)
    assert canary.changed() == {}
    await stack.archive_machine(mid)


def contents(machine_dir: Path) -> dict[str, bytes]:
    """Each regular file of the machine's overlay layer (never through a link) and its bytes;
    whatever moves meanwhile is passed over. By descriptor (``os.fwalk``): a path would follow
    a directory the machine's swap loop has just turned into a link to the host's files."""
    found = {}
    for top, _, files, top_fd in os.fwalk(machine_dir / "upper", follow_symlinks=False):
        for name in files:
            path = os.path.join(top, name)
            with contextlib.suppress(OSError):
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=top_fd)
                with os.fdopen(fd, "rb") as f:
                    found[path] = f.read() if stat.S_ISREG(os.fstat(fd).st_mode) else b""
    return found


@DOCKER
@pytest.mark.timeout(300)
async def test_a_container_its_engine_starts_again_waits_for_the_providers_start(
    stack: FleetClient, provider: str
) -> None:
    """The token's file is spent at the supervisor's start: a container its engine starts
    again by itself gets no token, says so and ends; the machine's next start writes a new one,
    and it serves again, with what it wrote outside its home."""
    mid = await busybox_machine(stack, "engine-restart", provider)
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


@DOCKER
@pytest.mark.timeout(120)
async def test_an_image_the_engine_lacks_fails_the_machine(
    stack: FleetClient, provider: str
) -> None:
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


@DOCKER
class TestEnvironmentPool(BusyboxPool):
    """``FLEET_WARM_POOL=docker@IMAGE=1``: a machine of that environment is claimed warm."""

    @pytest.mark.timeout(180)
    async def test_a_machine_of_the_environment_comes_from_its_pool(
        self, stack: FleetClient, stack_settings: Settings, busybox: str, provider: str
    ) -> None:
        await docker_pooled(stack_settings)
        inst = await stack.create_instance("pooled-env")
        await stack.set_environment(inst.id, Environment(image=busybox))
        mid = await ready(stack, inst.id, "docker")
        assert LABEL_POOL in (await inspect(mid))["Config"]["Labels"]
        assert (await out(stack, mid, "id", "-un")).strip() == "fleet"  # its slot's own uid
        assert (await stack.get_machine(mid)).environment == f"image {busybox}"
        other = await stack.create_instance("default-env")  # the default is not that pool's
        default = await ready(stack, other.id, "docker")
        assert LABEL_POOL not in (await inspect(default))["Config"]["Labels"]
