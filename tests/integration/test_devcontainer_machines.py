"""A devcontainer machine as its user meets it, through every service, a real engine and a
real git server: its ``containerEnv`` and ``remoteEnv`` in the environment of every process
it runs (commands, terminals, background processes), with the documented precedence; and its
repo checked out even in an image that has no git."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiodocker
import pytest

from contracts.bus.events import ReposReconciled
from contracts.gateway.environments import DevcontainerSource, Environment
from contracts.status import MachineStatus
from fleet.client import FleetClient
from tests.docker_env import docker_gateway, docker_image, nats_server, remove_containers
from tests.environments import busybox_image, out, read_until
from tests.gitserver import GitHttpServer
from tests.integration.test_environment_machines import REPO_PATH, git_served, serve_repo
from tests.waiters import wait_until

__all__ = ["docker_gateway", "docker_image", "git_served", "nats_server", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")

CONTAINER_ENV = {"FOO": "from-containerEnv", "LAYER": "container", "PLAT_OVER": "container"}
REMOTE_ENV = {"LAYER": "remote", "SEEN": "${containerEnv:FOO}+${containerEnv:FROM_IMAGE}"}


@pytest.fixture
async def busybox() -> AsyncIterator[str]:
    async with aiodocker.Docker() as docker:
        yield await busybox_image(docker)


async def devcontainer_machine(stack: FleetClient, url: str, provider: str) -> str:
    inst = await stack.create_instance("devcontainer")
    await stack.add_repo(inst.id, url=url, branch="main", path=REPO_PATH)
    await stack.set_environment(inst.id, Environment(devcontainer=DevcontainerSource(repo=url)))
    m = await stack.create_machine(inst.id, provider)  # type: ignore[arg-type]
    done = await stack.wait_for(m.id, ("ready", "failed"), timeout_s=240)
    assert done.status is MachineStatus.READY, done.status_reason
    return m.id


def env_of(text: str) -> dict[str, str]:
    return dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)


@pytest.mark.timeout(400)
@pytest.mark.parametrize("provider", ["local", "docker"])
async def test_container_and_remote_env_reach_every_process(
    provider: str, stack: FleetClient, docker_image: tuple[str, str], git_served: GitHttpServer,
    tmp_path: Path,
) -> None:  # fmt: skip
    """``machines.exec`` of ``env`` shows containerEnv and remoteEnv (remoteEnv over
    containerEnv, ``${containerEnv:...}`` resolved); so does a terminal and a background
    process; the image's own variables stay under them."""
    config = {"image": docker_image[1], "containerEnv": CONTAINER_ENV, "remoteEnv": REMOTE_ENV}
    url = serve_repo(git_served, tmp_path, {".devcontainer.json": json.dumps(config)})
    await stack.set_env("PLAT_OVER", "platform")
    mid = await devcontainer_machine(stack, url, provider)
    want = {"FOO": "from-containerEnv", "LAYER": "remote", "PLAT_OVER": "container"}

    seen = env_of(await out(stack, mid, "env"))
    assert {k: seen.get(k) for k in want} == want, seen
    assert seen.get("SEEN", "").startswith("from-containerEnv+"), seen
    assert seen.get("HOME") == "/home/fleet"

    opened = await stack.open_session(mid, ["sh", "-c", "echo in-a-terminal:$FOO:$LAYER; sleep 30"])
    ws = await stack.attach_session(mid, opened.session_id)
    said = b"in-a-terminal:from-containerEnv:remote"
    assert said in await read_until(ws, said)
    await ws.close()
    await stack.close_session(mid, opened.session_id)

    await stack.start_process(mid, ["sh", "-c", "env > bg.env; sleep 30"], tag="bg")

    async def written() -> bool:
        return (await stack.exec(mid, ["test", "-s", "bg.env"])).exit_code == 0

    await wait_until(written, timeout=30)
    background = env_of(await out(stack, mid, "cat", "bg.env"))
    assert {k: background.get(k) for k in want} == want, background
    await refreshed_env_keeps_them(stack, mid)


def dotenv(text: str) -> dict[str, str]:
    return {k: v.strip("'") for k, v in env_of(text).items() if not k.startswith("#")}


async def refreshed_env_keeps_them(stack: FleetClient, mid: str) -> None:
    """The .env pushed again (an instance variable set, machines.refreshEnv) still has the
    file's variables over the platform's, the instance's over them."""
    machine = await stack.get_machine(mid)
    await stack.set_env("LAYER", "instance", instance_id=machine.instance_id)

    async def pushed() -> bool:
        return dotenv(await out(stack, mid, "cat", ".fleet/.env")).get("LAYER") == "instance"

    await wait_until(pushed, timeout=30)
    await stack.refresh_env(machine.instance_id)
    written = dotenv(await out(stack, mid, "cat", ".fleet/.env"))
    want = {"FOO": "from-containerEnv", "LAYER": "instance", "PLAT_OVER": "container"}
    assert {k: written.get(k) for k in want} == want, written


@pytest.mark.timeout(400)
@pytest.mark.parametrize("provider", ["local", "docker"])
async def test_a_repo_reaches_a_machine_whose_image_has_no_git(
    provider: str, stack: FleetClient, busybox: str, git_served: GitHttpServer, tmp_path: Path
) -> None:
    """A devcontainer of the static busybox image (no git, no libc): the machine is ready with
    its repo checked out, a checkout git itself would read (its origin, its branch)."""
    config = {"image": busybox, "containerEnv": {"FOO": "bar"}}
    url = serve_repo(git_served, tmp_path, {".devcontainer.json": json.dumps(config),
                                            "src/hello.txt": "hello from the repo\n"})  # fmt: skip
    mid = await devcontainer_machine(stack, url, provider)
    assert (await stack.exec(mid, ["sh", "-c", "command -v git"])).exit_code != 0
    assert await out(stack, mid, "cat", f"{REPO_PATH}/src/hello.txt") == "hello from the repo\n"
    config_text = await out(stack, mid, "cat", f"{REPO_PATH}/.git/config")
    assert url in config_text, config_text
    assert (
        await out(stack, mid, "cat", f"{REPO_PATH}/.git/HEAD")
    ).strip() == "ref: refs/heads/main"
    # The instance's repos changed: the checkout is found there (not cloned again, nothing
    # reported as a conflict), the new repo cloned.
    machine = await stack.get_machine(mid)
    await stack.add_repo(machine.instance_id, url=url, branch="main", path="second")
    await wait_until(lambda: reconciled(stack, mid), timeout=60)
    assert await out(stack, mid, "cat", "second/src/hello.txt") == "hello from the repo\n"


async def reconciled(stack: FleetClient, mid: str) -> bool:
    """Whether the machine's repos-reconciled came: the first checkout found, the second
    cloned, no conflict."""
    async with contextlib.aclosing(stack.events(mid, follow=False)) as events:
        done = [e async for _, e in events if isinstance(e, ReposReconciled)]
    if not done:
        return False
    assert (done[-1].conflicts, done[-1].cloned, done[-1].unchanged) == (
        [], ["second"], [REPO_PATH]), done[-1]  # fmt: skip
    return True
