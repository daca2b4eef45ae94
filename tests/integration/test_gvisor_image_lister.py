"""A pause runs nothing inside a gvisor machine of an image, where root inside owns the
image's PATH: it sees the daemon let its NATS connection go from the host's side (pasta's own
sockets: providers/gvisor/pause.py ``nats_held``). On a real runsc sandbox with a real daemon
and a real engine, a ``cat`` that floods, planted where the image's PATH finds it first (a
pause once listed the machine's TCP endpoints with ``cat``), is never run, the pause is made,
and the provisioner's memory stays where it was. The host-side check itself:
tests/unit/test_gvisor_pause_parts.py.

One stack for the module (tests/gvisor_stack.py), NATS on the Docker machines' gateway, its
services in this process: the provisioner's memory is this process's."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from base.tasks import cancel_and_join
from fleet.client import FleetClient
from tests.docker_env import docker_image
from tests.gitserver import GitHttpServer
from tests.gvisor_stack import module_stack
from tests.integration.test_gvisor_environment import (
    devcontainer,
    git_served,
    gvisor_devcontainer,
    stack_settings,
)
from tests.integration.test_gvisor_root_output import ALLOWED_GROWTH, rss, sample_peak

#: The fixtures; ``stack`` on test_gvisor_environment.py's settings (a module's own, here too).
__all__ = ["docker_image", "git_served", "module_stack", "stack_settings"]
pytestmark = pytest.mark.asyncio(loop_scope="module")
#: A ``cat`` of root's that floods, wherever the image's PATH looks first.
PLANT = "#!/bin/sh\nexec yes 0123456789abcdef\n"


@pytest.mark.timeout(900)
async def test_a_cat_root_puts_first_on_an_images_path_is_not_what_a_pause_runs(
    stack: FleetClient, docker_image: tuple[str, str], git_served: GitHttpServer,
    tmp_path: Path,
) -> None:  # fmt: skip
    mid = await gvisor_devcontainer(stack, git_served, tmp_path, "gv-lister",
                                    devcontainer(docker_image[1]))  # fmt: skip
    path = (await stack.exec(mid, ["sh", "-c", "echo $PATH"], user="root")).stdout.strip()
    planted = [d for d in path.split(":") if d.startswith("/usr/local/")]
    assert planted, path
    script = "; ".join(f"mkdir -p {d} && printf '%s' \"$1\" > {d}/cat && chmod 755 {d}/cat"
                       for d in planted)  # fmt: skip
    made = await stack.exec(mid, ["sh", "-c", script, "plant", PLANT], user="root")
    assert made.exit_code == 0, made.stderr
    found = await stack.exec(mid, ["sh", "-c", "command -v cat"], user="root")
    assert found.stdout.strip() == f"{planted[0]}/cat"  # what root's PATH finds first
    before = rss()
    peak = [before]
    sampler = asyncio.create_task(sample_peak(peak))
    try:
        assert (await stack.pause_machine(mid)).status == "pausing"
        got = await stack.wait_for(mid, ["paused", "ready", "failed"], timeout_s=300)
    finally:
        await cancel_and_join(sampler)
    assert peak[0] - before < ALLOWED_GROWTH, f"grew {(peak[0] - before) >> 20} MiB"
    assert got.status == "paused", got.status_reason
