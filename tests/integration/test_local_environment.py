"""A machine of an environment's image, ``local`` provider (bubblewrap), a real engine and
every service: the static busybox image's root (unpacked once per image ID, under an overlay of
the machine's own) in place of the host's system; the platform's runtime brought in
read-only; what the machine writes outside its home survives stop/start and goes with
archive."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from pathlib import Path

import aiodocker
import pytest

from contracts.gateway_environments import Environment
from contracts.status import MachineStatus
from fleet.client import FleetClient
from providers.cgroup import MachineCgroup
from services.common.settings import Settings
from tests.environments import (
    busybox_image,
    files_terminal_and_port,
    out,
    preloading_machine,
    ready,
    refresh_code_runs,
    stop_start_keeps_what_it_wrote,
)
from tests.hostile import Canary


@pytest.mark.timeout(300)
async def test_a_busybox_image_local_machine(stack: FleetClient, tmp_path: Path) -> None:
    async with aiodocker.Docker() as docker:
        tag = await busybox_image(docker)
        image_id = (await docker.images.inspect(tag))["Id"]
    inst = await stack.create_instance("busybox-local")
    await stack.set_environment(inst.id, Environment(image=tag))
    mid = await ready(stack, inst.id, "local")
    m = await stack.get_machine(mid)
    assert (m.environment, m.environment_image) == (f"image {tag}", image_id)
    # The image's system, not the host's: no Python, no libc, busybox's ls.
    assert (await stack.exec(mid, ["test", "-e", "/usr/bin/python3"])).exit_code == 1
    assert "busybox" in await out(stack, mid, "sh", "-c", "ls -l /bin/ls")
    assert (await out(stack, mid, "sh", "-c", "echo $HOME; pwd")).split() == ["/home/fleet"] * 2
    env = await out(stack, mid, "env")
    for leaked in ("PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH", "FLEET_RUNTIME_LIBS"):
        assert leaked not in env
    await stack.write_file(mid, "notes.txt", "in the home\n")
    assert await out(stack, mid, "cat", "/home/fleet/notes.txt") == "in the home\n"

    await files_terminal_and_port(stack, mid, tmp_path)
    await refresh_code_runs(stack, mid)
    await forks_and_snapshots_keep_what_it_wrote(stack, mid)
    await stop_start_keeps_what_it_wrote(stack, mid, "local")


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
async def test_an_images_preload_never_runs_as_host_root(
    stack: FleetClient, tmp_path: Path
) -> None:
    """An image whose /etc/ld.so.preload names its own library: neither the sandbox's first
    process (started by root) nor the platform's supervisor and daemon run it; whatever of
    the machine's does runs as the machine's user, in a user namespace of its own."""
    mid = await preloading_machine(stack, tmp_path, "local")
    # Its own user namespace: not the host's identity map.
    assert (await out(stack, mid, "cat", "/proc/self/uid_map")).split() != ["0", "0", "4294967295"]
    await stack.archive_machine(mid)


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


@pytest.mark.timeout(300)
async def test_a_fork_of_a_machine_that_cannot_be_frozen_is_refused(stack: FleetClient) -> None:
    """Root copies a fork's overlay (its source's writes outside its home: root's files,
    whiteouts); only a frozen source cannot swap a link into it under the copy. A running
    source with no cgroup to freeze: the fork fails, naming why, and nothing is copied; the
    source runs on."""
    async with aiodocker.Docker() as docker:
        tag = await busybox_image(docker)
    inst = await stack.create_instance("unfrozen-local")
    await stack.set_environment(inst.id, Environment(image=tag))
    mid = await ready(stack, inst.id, "local")
    await out(stack, mid, "sh", "-c", "echo mine > /opt/kept")
    await asyncio.to_thread(lose_cgroup, mid)
    [fork] = await stack.fork_machine(mid, 1)
    done = await stack.wait_for(fork.id, ("ready", "failed"), timeout_s=120)
    assert done.status is MachineStatus.FAILED
    assert "none of its cgroups" in (done.status_reason or ""), done.status_reason
    assert await out(stack, mid, "cat", "/opt/kept") == "mine\n"
    await stack.archive_machine(mid)


@pytest.mark.timeout(300)
async def test_a_forks_copy_of_an_overlay_follows_nothing_the_machine_planted(
    stack: FleetClient, settings: Settings, tmp_path: Path
) -> None:
    """Root copies a fork's overlay: the source plants there a link to a host directory, one
    to a host file and a FIFO, and swaps a directory with a link to the host directory in a
    loop. Each fork has the links as links, and nothing of the host's files; those are
    unchanged."""
    canary = Canary(tmp_path / "host-secrets")
    async with aiodocker.Docker() as docker:
        tag = await busybox_image(docker)
    inst = await stack.create_instance("hostile-overlay")
    await stack.set_environment(inst.id, Environment(image=tag))
    mid = await ready(stack, inst.id, "local")
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
    whatever moves meanwhile is passed over."""
    found = {}
    for top, _, files in os.walk(machine_dir / "upper"):
        for name in files:
            path = os.path.join(top, name)
            with contextlib.suppress(OSError):
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                with os.fdopen(fd, "rb") as f:
                    found[path] = f.read() if stat.S_ISREG(os.fstat(fd).st_mode) else b""
    return found
