"""A machine of an environment's image, ``local`` provider (bubblewrap), a real engine and
every service: the static busybox image's root (unpacked once per image ID, under an overlay of
the machine's own) in place of the host's system; the platform's runtime brought in
read-only; what the machine writes outside its home survives stop/start and goes with
archive."""

from __future__ import annotations

import aiodocker
import pytest

from contracts.gateway_environments import Environment
from contracts.status import MachineStatus
from fleet.client import FleetClient
from tests.environments import busybox_image


async def ready(stack: FleetClient, instance_id: str) -> str:
    m = await stack.create_machine(instance_id, "local")
    done = await stack.wait_for(m.id, ("ready", "failed"), timeout_s=120)
    assert done.status is MachineStatus.READY, done.status_reason
    return m.id


async def out(stack: FleetClient, mid: str, *argv: str) -> str:
    r = await stack.exec(mid, list(argv), timeout_s=30)
    assert r.exit_code == 0, (argv, r.stderr)
    return r.stdout


@pytest.mark.timeout(300)
async def test_a_busybox_image_local_machine(stack: FleetClient) -> None:
    async with aiodocker.Docker() as docker:
        tag = await busybox_image(docker)
        image_id = (await docker.images.inspect(tag))["Id"]
    inst = await stack.create_instance("busybox-local")
    await stack.set_environment(inst.id, Environment(image=tag))
    mid = await ready(stack, inst.id)
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

    await out(stack, mid, "sh", "-c", "echo kept > /opt/tool")
    await stack.stop_machine(mid)
    await stack.wait_for(mid, ("stopped",), timeout_s=60)
    await stack.start_machine(mid)
    assert (await stack.wait_for(mid, ("ready", "failed"), timeout_s=120)).status.value == "ready"
    assert await out(stack, mid, "cat", "/opt/tool") == "kept\n"
    await stack.archive_machine(mid)
    again = await ready(stack, inst.id)
    assert (await stack.exec(again, ["test", "-e", "/opt/tool"])).exit_code == 1
