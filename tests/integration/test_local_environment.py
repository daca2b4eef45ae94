"""A machine of an environment's image, ``local`` provider (bubblewrap), a real engine and
every service: the static busybox image's root (unpacked once per image ID, under an overlay of
the machine's own) in place of the host's system; the platform's runtime brought in
read-only; what the machine writes outside its home survives stop/start and goes with
archive."""

from __future__ import annotations

from pathlib import Path

import aiodocker
import pytest

from contracts.gateway_environments import Environment
from fleet.client import FleetClient
from tests.environments import (
    busybox_image,
    files_terminal_and_port,
    out,
    ready,
    refresh_code_runs,
    stop_start_keeps_what_it_wrote,
)


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
    await stop_start_keeps_what_it_wrote(stack, mid, "local")
