"""The kernel's per-user limits between ``local`` machines of an environment's image: such a
machine runs in a user namespace of its own (providers/sandbox/userns.py), and the kernel
charges what a namespace's processes hold (inotify instances among them) to the namespace's
owner's uid too. Made by bubblewrap as root, every such namespace was root's: one tenant's
``inotify_init1`` took the host root's 128 of ``fs.inotify.max_user_instances``, and with them
every other image machine's watchers and the host's own root processes'. The docker provider's
side: tests/integration/test_docker_user_limits.py."""

from __future__ import annotations

import ctypes
import os

import pytest

from contracts.gateway.environments import Environment
from fleet.client import FleetClient
from tests.docker_env import docker_gateway, docker_image, remove_containers
from tests.environments import ready
from tests.integration.test_docker_user_limits import runs_out, still_watches
from tests.provider_param import nats_server, provider

__all__ = ["docker_gateway", "docker_image", "nats_server", "provider", "remove_containers"]


def host_root_inotify() -> int:
    """One ``inotify_init1`` of this process (the host's root): its descriptor (closed), or the
    errno it failed with (negative)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(0)
    if fd < 0:
        return -ctypes.get_errno()
    os.close(fd)
    return fd


@pytest.mark.parametrize("provider", ["local"])
@pytest.mark.timeout(300)
async def test_an_image_machine_out_of_inotify_instances_leaves_the_host_and_others_theirs(
    stack: FleetClient, docker_image: tuple[str, str], provider: str
) -> None:
    _, image = docker_image  # the machine image: an image with python3
    machines = []
    for name in ("inotify-image-a", "inotify-image-b"):
        inst = await stack.create_instance(name)
        await stack.set_environment(inst.id, Environment(image=image))
        machines.append(await ready(stack, inst.id, provider))
    a, b = machines
    await runs_out(stack, a)
    assert host_root_inotify() >= 0  # the host's root still gets one
    await still_watches(stack, b)  # and so does another image machine
