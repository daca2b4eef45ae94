"""The kernel's per-user limits between docker machines of two tenants (a real engine and the
real machine image). The kernel counts some limits per uid (its user namespace's and the uid's:
inotify instances and watches among them), and every docker machine ran as uid 1000 of the
host's namespace: one tenant's 200 ``inotify_init1`` took all 128 of
``fs.inotify.max_user_instances``, and every other docker machine's ``machines.watch``, and its
own file watchers (vite, webpack), failed. Each docker machine now runs as a host uid of its
own (providers/docker/users.py): a tenant that exhausts its instances exhausts its own."""

from __future__ import annotations

import pytest

from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.docker_env import docker_gateway, docker_image, nats_server, remove_containers
from tests.integration.test_docker import ready_machine
from tests.waiters import wait_until
from tests.watch_checks import sees_an_execs_changes

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")

#: What tenant A runs: as many inotify instances as it can, up to 200, held; how many it got
#: written to ``held`` once it has them all.
HOG = """\
import ctypes, time
libc = ctypes.CDLL(None, use_errno=True)
fds = []
for _ in range(200):
    fd = libc.inotify_init1(0)
    if fd < 0:
        break
    fds.append(fd)
open("held", "w").write(str(len(fds)))
time.sleep(3600)
"""
#: One ``inotify_init1``: its descriptor, or the errno it failed with (negative).
ONE = """\
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(0)
print(fd if fd >= 0 else -ctypes.get_errno())
"""


@pytest.mark.timeout(300)
async def test_a_tenant_out_of_inotify_instances_leaves_anothers_watch(
    stack: FleetClient,
) -> None:
    a = await ready_machine(stack, "inotify-a")
    b = await ready_machine(stack, "inotify-b")
    await runs_out(stack, a)
    await still_watches(stack, b)


async def runs_out(stack: FleetClient, mid: str) -> None:
    """Machine ``mid`` takes every inotify instance it can get (``HOG``), and holds them."""
    await stack.start_process(mid, ["python3", "-c", HOG], tag="hog")

    async def held() -> bool:
        return (await stack.exec(mid, ["cat", "held"])).exit_code == 0

    await wait_until(held, timeout=60)
    took = int((await stack.exec(mid, ["cat", "held"])).stdout)
    assert took < 200  # it ran out: the kernel's limit refused it the rest


async def still_watches(stack: FleetClient, mid: str) -> None:
    """Machine ``mid``'s own file watchers get an instance, and its machines.watch sees its
    files."""
    one = await stack.exec(mid, ["python3", "-c", ONE])
    assert int(one.stdout) >= 0, one
    await sees_an_execs_changes(stack, mid)


async def test_each_docker_machine_runs_as_a_uid_of_its_own_named_as_the_images_user(
    stack: FleetClient, settings: Settings
) -> None:
    a = await ready_machine(stack, "uid-a")
    b = await ready_machine(stack, "uid-b")
    said = [(await stack.exec(m, ["sh", "-c", "id -u; id -un; id -gn; stat -c %u ~"])).stdout
            for m in (a, b)]  # fmt: skip
    uids = [int(s.split()[0]) for s in said]
    assert uids[0] != uids[1], said
    lo, hi = settings.docker_uid_range or (0, 0)
    assert all(lo <= u <= hi for u in uids), said
    for uid, out in zip(uids, said, strict=True):
        assert out.split()[1:] == ["fleet", "fleet", str(uid)], out  # its name; its home
