"""`fleet gc` and docker (fleet/up/gc.py): the containers and volumes of a stack whose data dir is
removed are removed; a running stack's, and those of a stack whose dir is still there (its
next `fleet up` resumes them), are kept."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from fleet.up import gc
from providers.docker import LABEL_STACK
from tests import leftovers
from tests.docker_env import docker_image, remove_containers
from tests.fast.test_gc import dead_pid, hold

__all__ = ["docker_image", "remove_containers"]


def docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60,
                          check=True)  # fmt: skip
    return done.stdout.strip()


def made(stack: Path, image: str) -> tuple[str, str]:
    """A container (created, never started) and a volume labelled with ``stack``."""
    label = f"{LABEL_STACK}={stack}"
    container = docker("create", "--label", label, "--name", f"gc-{stack.name}-{os.getpid()}",
                       image, "true")  # fmt: skip
    volume = docker("volume", "create", "--label", label, f"gc-{stack.name}-{os.getpid()}")
    return docker("inspect", "--format", "{{.Name}}", container).lstrip("/"), volume


@pytest.mark.usefixtures("remove_containers")
def test_a_removed_stack_s_container_and_volume_go_the_others_stay(
    tmp_path: Path, docker_image: tuple[str, str]
) -> None:
    removed, live, killed = tmp_path / "removed", tmp_path / "live", tmp_path / "killed"
    hold(live, os.getpid())
    hold(killed, dead_pid())
    try:
        removed_things = made(removed, docker_image[1])
        for stack in (live, killed):
            made(stack, docker_image[1])
        assert gc.find(only=live).lines() == []
        assert gc.find(only=killed).lines() == []  # its next `fleet up` resumes them
        found = gc.find(only=removed)
        assert (found.containers, found.volumes) == ([removed_things[0]], [removed_things[1]])
        assert gc.remove(found) == []
        assert leftovers.containers(removed) == []
        assert len(leftovers.containers(tmp_path)) == 4  # the others' containers and volumes
    finally:
        for stack in (removed, live, killed):
            name = f"gc-{stack.name}-{os.getpid()}"
            subprocess.run(["docker", "rm", "--force", "--volumes", name], capture_output=True,
                           timeout=60, check=False)  # fmt: skip
            subprocess.run(["docker", "volume", "rm", name], capture_output=True, timeout=60,
                           check=False)  # fmt: skip
