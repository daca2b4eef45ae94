"""The docker provider with a real engine, the real image and every service: a machine is a
container that goes created -> ready with a repo cloned, runs commands inside itself, comes back
when its daemon is SIGKILLed, restarts in place, and is gone (container and volume) on archive."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from subprocess import PIPE, STDOUT

import pytest

from base.codestore import CODE_MOUNT
from contracts.daemon.machine_files import CODE_SHA_FILE
from contracts.errors import DaemonTimeout, DaemonUnavailable
from contracts.status import MachineStatus
from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.docker import DockerProvider
from providers.docker.names import LABEL_INSTANCE, LABEL_MACHINE
from tests.docker_env import (
    docker_gateway,
    docker_image,
    home_of,
    inspect,
    nats_server,
    remove_containers,
    volume_exists,
)
from tests.environments import refresh_code
from tests.gitserver import GitHttpServer
from tests.waiters import wait_until

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")


@pytest.fixture
async def git_http(bare_repo: Path, docker_gateway: str) -> AsyncIterator[GitHttpServer]:
    async with GitHttpServer(bare_repo.parent, "git", "s3cret", host=docker_gateway) as server:
        yield server


async def ready_machine(stack: FleetClient, name: str, repo_url: str | None = None) -> str:
    inst = await stack.create_instance(name)
    if repo_url:
        await stack.add_repo(inst.id, repo_url, "main", "app", token="s3cret", username="git")
    machine = await stack.create_machine(inst.id, "docker")
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=120)
    assert done.status is MachineStatus.READY, done.status_reason
    return machine.id


async def answers(stack: FleetClient, mid: str) -> bool:
    try:
        return (await stack.exec(mid, ["echo", "back"], timeout_s=2)).stdout == "back\n"
    except (DaemonUnavailable, DaemonTimeout):
        return False


async def container_log(mid: str) -> str:
    out = await asyncio.create_subprocess_exec(
        "docker", "logs", "--tail", "40", f"fleet-{mid}", stdout=PIPE, stderr=STDOUT
    )
    return (await out.communicate())[0].decode(errors="replace")


async def test_a_docker_machine_is_a_container(
    stack: FleetClient, settings: Settings, git_http: GitHttpServer
) -> None:
    mid = await ready_machine(stack, "boxed", git_http.url("repo.git"))
    info = await inspect(mid)
    assert info["Name"] == f"/fleet-{mid}"
    inst = (await stack.get_machine(mid)).instance_id
    labels = info["Config"]["Labels"]
    assert (labels[LABEL_MACHINE], labels[LABEL_INSTANCE]) == (mid, inst)
    host = info["HostConfig"]
    assert host["Privileged"] is False
    assert host["CapDrop"] == ["ALL"]
    # A uid of its own (FLEET_DOCKER_UIDS) from the first process on, with no capability at
    # all, and the token is in no environment.
    assert not host["CapAdd"]
    uid = int(info["Config"]["User"].split(":")[0])
    lo, hi = settings.docker_uid_range or (0, 0)
    assert lo <= uid <= hi
    assert info["Config"]["User"] == f"{uid}:{uid}"
    assert not [e for e in info["Config"]["Env"] if e.startswith("FLEET_MACHINE_TOKEN=")]
    ids = await stack.exec(
        mid, ["sh", "-c", "grep -h '^Uid\\|^CapEff' /proc/[0-9]*/status | sort -u"]
    )
    assert ids.stdout.split("\n")[:-1] == [
        "CapEff:\t0000000000000000",
        f"Uid:\t{uid}\t{uid}\t{uid}\t{uid}",
    ]
    # The token's file is the machine's uid's, but was spent before any of its commands ran;
    # nor can one be put beside it.
    spent = await stack.exec(
        mid, ["sh", "-c", "cat /run/fleet/secret/token; : > /run/fleet/secret/x"]
    )
    assert (spent.stdout, spent.exit_code != 0) == ("", True)
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Memory"] == settings.machine_memory_mb * 1024 * 1024
    assert host["PidsLimit"] == settings.machine_pids
    assert host["NanoCpus"] == int(settings.machine_cpus * 1e9)
    assert host["NetworkMode"] == settings.docker_network
    # exec runs inside it: its hostname, its uid, the repo cloned into its own home volume
    out = await stack.exec(mid, ["sh", "-c", "hostname; id -u; cat app/README"])
    assert out.stdout == f"{info['Config']['Hostname']}\n{uid}\nmain\n"
    assert (await home_of(mid) / "app" / "README").read_text() == "main\n"
    # refreshCode: the platform's code in the machine's read-only code volume, run by the daemon
    refreshed = await refresh_code(stack, mid)  # and the daemon it restarted back
    assert f"in {CODE_MOUNT}" in refreshed.message
    sha = refreshed.to_git_sha
    marker = await stack.exec(mid, ["cat", f"{CODE_MOUNT}/{sha}/{CODE_SHA_FILE}"])
    assert marker.stdout == f"{sha}\n"
    touch = await stack.exec(mid, ["touch", f"{CODE_MOUNT}/{sha}/x", f"{CODE_MOUNT}/current"])
    assert touch.exit_code != 0  # read-only to the machine
    await stack.archive_machine(mid)

    async def gone() -> bool:
        return await inspect(mid) is None and not await volume_exists(mid)

    await wait_until(gone, timeout=10, every=0.2)


async def test_a_sigkilled_docker_daemon_is_back_within_10s(
    stack: FleetClient, settings: Settings
) -> None:
    mid = await ready_machine(stack, "phoenix")
    bg = await stack.start_process(mid, ["sleep", "300"], tag="survivor")
    async with DockerProvider(nats_url="", network="", base_image="", work_dir=Path("/"),
                              code_repo=Path("/")) as provider:  # fmt: skip
        old = await provider.daemon_pid(mid)
        assert old is not None
        os.kill(old, signal.SIGKILL)  # the local engine: its processes are this host's
        try:
            await wait_until(lambda: answers(stack, mid), timeout=10, every=0.2)
        except TimeoutError:
            raise AssertionError(await container_log(mid)) from None
        assert await provider.daemon_pid(mid) not in (None, old)
        assert [(p.tag, p.state) for p in await stack.list_processes(mid) if p.pid == bg.pid] == [
            ("survivor", "running")
        ]
        # machines.restart: a new daemon, asked for
        before = await provider.daemon_pid(mid)
        await stack.restart_machine(mid)

        async def restarted() -> bool:
            return await provider.daemon_pid(mid) not in (None, before)

        try:
            await wait_until(restarted, timeout=10, every=0.2)
        except TimeoutError:
            raise AssertionError(await container_log(mid)) from None
        await wait_until(lambda: answers(stack, mid), timeout=10, every=0.2)
    assert [(p.tag, p.state) for p in await stack.list_processes(mid) if p.pid == bg.pid] == [
        ("survivor", "running")
    ]
    assert (await stack.get_machine(mid)).status is MachineStatus.READY
