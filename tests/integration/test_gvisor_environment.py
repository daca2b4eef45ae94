"""A gvisor machine of an environment's image (docs/runtimes.md, "Environments"), on real runsc
sandboxes with real daemons and a real engine: a devcontainer of the machine image runs on
gVisor's kernel with the image's own system, its lifecycle commands run, and nothing of it is
written into the image's unpacked root that every machine of the image shares.

One stack for the module (tests/gvisor_stack.py), NATS on the Docker machines' gateway: each
test makes a machine of its own (one is stopped, started and archived), and the second finds the
image unpacked by the first."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from contracts.gateway.environments import DevcontainerSource, Environment
from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.local.image_rootfs import rootfs_dir
from tests.docker_env import docker_image
from tests.environments import out
from tests.gitserver import GitHttpServer
from tests.gvisor_stack import gvisor_settings, module_stack
from tests.integration.test_environment_machines import serve_repo

__all__ = ["docker_image", "module_stack"]  # the fixtures; ``stack`` on this module's settings
pytestmark = pytest.mark.asyncio(loop_scope="module")
LOG = "/home/fleet/lifecycle.log"
#: ptrace traps every syscall: a daemon's Python in an image starts slowly on a busy host.
READY_S = 600


@pytest.fixture(scope="module")
def stack_settings(
    tmp_path_factory: pytest.TempPathFactory, docker_image: tuple[str, str]
) -> Iterator[Settings]:
    """NATS on the Docker machines' gateway: an address of the host gVisor's stack reaches."""
    with gvisor_settings(tmp_path_factory.mktemp("gvisor-env"), docker_image[0],
                         runtime="gvisor", rpc_timeout_s=60.0) as made:  # fmt: skip
        yield made


@pytest_asyncio.fixture(loop_scope="module")
async def git_served(tmp_path: Path, docker_image: tuple[str, str]) -> AsyncIterator[GitHttpServer]:
    root = tmp_path / "served"
    root.mkdir()
    async with GitHttpServer(root, None, None, host=docker_image[0]) as server:
        yield server


def devcontainer(image: str, **more: object) -> str:
    return json.dumps({
        "image": image,
        "onCreateCommand": f"echo onCreate >> {LOG}",
        "postCreateCommand": f"echo postCreate >> {LOG} && id -u > $HOME/post-create.uid",
        "postStartCommand": f"echo postStart >> {LOG}",
        **more,
    })  # fmt: skip


async def gvisor_devcontainer(stack: FleetClient, served: GitHttpServer, tmp_path: Path,
                              name: str, spec: str) -> str:  # fmt: skip
    """A ready gvisor machine of a devcontainer ``spec`` (its repo served)."""
    url = serve_repo(served, tmp_path, {".devcontainer/devcontainer.json": spec})
    inst = await stack.create_instance(name)
    await stack.add_repo(inst.id, url=url, branch="main", path="src/app")
    await stack.set_environment(inst.id, Environment(devcontainer=DevcontainerSource(repo=url)))
    created = await stack.create_machine(inst.id, runtime="gvisor")
    got = await stack.wait_for(created.id, ["ready", "failed"], timeout_s=READY_S)
    assert got.status == "ready", got.status_reason
    return created.id


@pytest.mark.timeout(900)
async def test_a_devcontainer_image_on_gvisor(
    stack: FleetClient, stack_settings: Settings, docker_image: tuple[str, str],
    git_served: GitHttpServer, tmp_path: Path,
) -> None:  # fmt: skip
    mid = await gvisor_devcontainer(stack, git_served, tmp_path, "gv-image",
                                    devcontainer(docker_image[1]))  # fmt: skip
    m = await stack.get_machine(mid)
    assert m.runtime == "gvisor"
    image_id = m.environment_image
    assert image_id
    # The image's system, on gVisor's kernel.
    unpacked = rootfs_dir(stack_settings.data_path.resolve()) / image_id.removeprefix("sha256:")
    assert (
        await out(stack, mid, "cat", "/etc/os-release")
        == (unpacked / "etc" / "os-release").read_text()
    )
    assert "gVisor" in await out(stack, mid, "dmesg")
    assert (await out(stack, mid, "sh", "-c", "echo $HOME; pwd")).split() == ["/home/fleet"] * 2
    # Its lifecycle commands ran, as the machine's user, in its home (the host's directory).
    assert (await out(stack, mid, "cat", LOG)).split() == ["onCreate", "postCreate", "postStart"]
    uid = (stack_settings.data_path / "machines" / mid / "uid").read_text().strip()
    assert (await out(stack, mid, "cat", "post-create.uid")).strip() == uid
    home = stack_settings.data_path / "machines" / mid / "home"
    assert (home / "post-create.uid").stat().st_uid == int(uid)
    # sudo (the platform's, daemon/supervision/sudo.py) runs on the platform's runtime in the
    # image: root
    # of gVisor's kernel, which owns the image's /etc there.
    assert await out(stack, mid, "sudo", "id", "-u") == "0\n"
    assert await out(stack, mid, "sh", "-c", "echo x | sudo tee /etc/fleet-test") == "x\n"
    assert (await stack.exec(mid, ["sudo", "test", "-O", "/etc/fleet-test"])).exit_code == 0
    # Its root is the image's, shared and never written: runsc's mount points are in an
    # overlay of the machine's own.
    assert not (unpacked / "run" / "fleet").exists()
    assert (stack_settings.data_path / "machines" / mid / "gvisor-upper" / "run" / "fleet").is_dir()


#: As root: writes under /etc, /usr/local and /var/lib (apt's and dpkg's places), and the
#: attacker's plants in the home: a set-user-ID copy of a program, a file of root's.
AS_ROOT = (
    "id -u > $HOME/post-create.uid && echo made > /etc/fleet-made"
    " && mkdir -p /usr/local/lib/fleet-test /var/lib/fleet-test"
    " && touch /usr/local/lib/fleet-test/x /var/lib/fleet-test/y"
    " && cp /bin/true $HOME/t && chmod 4755 $HOME/t && touch $HOME/r && chown 0:0 $HOME/r"
)


@pytest.mark.timeout(900)
async def test_remote_user_root_on_gvisor_is_root_of_its_own_kernel_never_the_hosts(
    stack: FleetClient, stack_settings: Settings, docker_image: tuple[str, str],
    git_served: GitHttpServer, tmp_path: Path,
) -> None:  # fmt: skip
    spec = devcontainer(docker_image[1], remoteUser="root", postCreateCommand=AS_ROOT)
    mid = await gvisor_devcontainer(stack, git_served, tmp_path, "gv-image-root", spec)
    # Its commands and its lifecycle commands run as uid 0 of its own kernel.
    assert (await out(stack, mid, "cat", "post-create.uid")).strip() == "0"
    assert (await out(stack, mid, "sh", "-c", "id -u; echo $HOME")).split() == ["0", "/home/fleet"]
    assert await out(stack, mid, "cat", "/etc/fleet-made") == "made\n"
    assert (await stack.exec(mid, ["test", "-f", "/var/lib/fleet-test/y"])).exit_code == 0
    # Root inside is the machine's own host uid: nothing it made in the home is the host
    # root's, and its set-user-ID file is set-user-ID to that uid, nobody's root.
    machine_dir = stack_settings.data_path.resolve() / "machines" / mid
    uid = int((machine_dir / "uid").read_text())
    home = machine_dir / "home"
    assert uid != 0
    assert {(home / n).lstat().st_uid for n in ("t", "r", "post-create.uid")} == {uid}
    assert [str(p) for p in [home, *home.rglob("*")] if p.lstat().st_uid == 0] == []
    assert (home / "t").stat().st_mode & 0o4000  # planted, and harmless
    # Its writes outside the home are in its overlay on the host, never in the image's
    # shared root, and nothing there is the host root's either.
    unpacked = rootfs_dir(stack_settings.data_path.resolve())
    assert not list(unpacked.glob("*/etc/fleet-made"))
    upper = machine_dir / "gvisor-upper"
    assert (upper / "etc" / "fleet-made").lstat().st_uid == uid
    assert [str(p) for p in [upper, *upper.rglob("*")] if p.lstat().st_uid == 0] == []
    # They are kept across a stop (postCreateCommand runs once: what it installed stays): a
    # machine of the test's own.
    await stack.stop_machine(mid)
    await stack.wait_for(mid, ("stopped",), timeout_s=120)
    await stack.start_machine(mid)
    again = await stack.wait_for(mid, ("ready", "failed"), timeout_s=READY_S)
    assert again.status == "ready", again.status_reason
    assert await out(stack, mid, "cat", "/etc/fleet-made") == "made\n"
    assert (await out(stack, mid, "id", "-u")).strip() == "0"
    # Archived: its overlay and its mounts of the image go with it, the shared image stays.
    await stack.archive_machine(mid)
    await stack.wait_for(mid, ("archived",), timeout_s=120)
    assert not upper.exists()
    assert not any(mid in line for line in Path("/proc/self/mountinfo").read_text().splitlines())
    assert list(unpacked.glob("*/etc/os-release"))
