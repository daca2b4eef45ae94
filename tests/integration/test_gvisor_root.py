"""Root inside a gvisor machine, never on the host (docs/runtimes.md, "Root inside"), on real
runsc sandboxes with real daemons: ``sudo`` (daemon/supervision/sudo.py, no set-user-ID bit: this
runsc
ignores them) gives root of gVisor's kernel, writes under /etc stay in the sandbox's view, and
nothing root does inside is root's on the host; on a namespaces machine ``sudo`` gives nothing.
The parser's rules: tests/unit/test_sudo.py.

One stack for the module (tests/gvisor_stack.py), and one gvisor machine for the tests that
only act inside it, each under names of its own (`machine`); the test that pauses a machine
makes its own."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.gvisor.root import FSTAB, STAGE, STAGE_SCRIPT, id_mappings, staged_bundle
from tests.gvisor_stack import gvisor_settings, module_stack
from tests.integration.test_gvisor import READY_S, paused_and_resumed, ready_gvisor

__all__ = ["module_stack"]  # the fixture ``stack``, on this module's settings
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with gvisor_settings(tmp_path_factory.mktemp("gvisor-root"), runtime="gvisor",
                         rpc_timeout_s=60.0) as made:  # fmt: skip
        yield made


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def machine(stack: FleetClient) -> str:
    """A ready gvisor machine for the tests that only act inside it, each under names of its
    own (a file under /etc, a directory in the home): none finds what another made."""
    return await ready_gvisor(stack, "gv-sudo")


async def sh(stack: FleetClient, mid: str, script: str) -> tuple[int, str, str]:
    got = await stack.exec(mid, ["sh", "-c", script], timeout_s=120)
    return got.exit_code, got.stdout, got.stderr


@pytest.mark.timeout(900)
async def test_sudo_in_a_gvisor_machine_is_root_of_its_own_kernel(
    stack: FleetClient, stack_settings: Settings, machine: str
) -> None:
    mid = machine
    assert await sh(stack, mid, "sudo id -u") == (0, "0\n", "")
    assert await sh(stack, mid, "sudo -u nobody id -u") == (0, "65534\n", "")
    assert await sh(stack, mid, "sudo -n -E true && sudo sh -c 'exit 7'; echo $?") == (
        0, "7\n", "",
    )  # fmt: skip
    code, out, err = await sh(
        stack, mid, "echo x | sudo tee /etc/fleet-test && cat /etc/fleet-test"
    )
    assert (code, out) == (0, "x\nx\n"), err
    code, out, err = await sh(
        stack, mid, "cd /tmp && sudo -s pwd && sudo -i pwd && sudo printenv HOME"
    )
    assert (code, out) == (0, "/tmp\n/root\n/root\n") or (code, out) == (0, "/tmp\n/\n/root\n"), err
    # The write is gVisor's alone: the directory behind the sandbox's root has no such file.
    rootfs = stack_settings.data_path.resolve() / "machines" / mid / "gvisor" / "rootfs"
    assert rootfs.is_dir()
    assert not (rootfs / "etc" / "fleet-test").exists()


@pytest.mark.timeout(900)
async def test_sudo_never_reaches_the_hosts_root(
    stack: FleetClient, stack_settings: Settings, tmp_path: Path, machine: str
) -> None:
    secret = tmp_path / "host-secret"
    secret.write_text("the host's")
    secret.chmod(0o600)
    mid = machine
    # A host file the machine has no mount of is not there for root inside either.
    code, out, _ = await sh(stack, mid, f"sudo cat {secret}")
    assert code != 0
    assert "the host's" not in out
    # Root inside writes into the home, through a directory anyone may write to: on the host
    # nothing there is root's (a set-user-ID file of the host's root would be a way up).
    code, out, err = await sh(
        stack, mid,
        'chmod 0755 ~ && mkdir -m 0777 ~/pub && sudo sh -c "cp /bin/true $HOME/pub/t; '
        'chmod 4755 $HOME/pub/t; touch $HOME/pub/f $HOME/r; mkdir $HOME/pub/d"; echo done',
    )  # fmt: skip
    assert code == 0, err
    assert out.endswith("done\n"), err
    machine_dir = stack_settings.data_path.resolve() / "machines" / mid
    home = machine_dir / "home"
    # Root did write there, as a host uid of the machine's own, neither 0 nor its user's.
    root_uid = int((machine_dir / "root-uid").read_text())
    assert root_uid not in (0, int((machine_dir / "uid").read_text()))
    assert {p.lstat().st_uid for p in (home / "pub").iterdir()} == {root_uid}
    owned_by_root = [str(p) for p in [home, *home.rglob("*")] if p.lstat().st_uid == 0]
    assert owned_by_root == []
    assert not any(os.lstat(p).st_mode & 0o4000 for p in home.rglob("*") if os.lstat(p).st_uid == 0)


@pytest.mark.timeout(600)
async def test_sudo_gives_nothing_on_a_namespaces_machine(stack: FleetClient) -> None:
    inst = await stack.create_instance("ns-sudo")
    created = await stack.create_machine(inst.id, runtime="namespaces")
    got = await stack.wait_for(created.id, ["ready", "failed"], timeout_s=READY_S)
    assert got.status == "ready", got.status_reason
    code, out, _ = await sh(stack, created.id, "sudo id -u")
    assert code != 0
    assert out == ""
    code, out, _ = await sh(stack, created.id, "id -u")
    assert code == 0
    assert out.strip() != "0"


@pytest.mark.timeout(900)
async def test_sudo_works_after_a_pause_and_resume_and_roots_writes_are_kept(
    stack: FleetClient,
) -> None:
    """Pauses its machine: one of its own."""
    mid = await ready_gvisor(stack, "gv-sudo-pause")
    assert await sh(stack, mid, "echo kept | sudo tee /etc/fleet-kept") == (0, "kept\n", "")
    await paused_and_resumed(stack, mid)
    # The broker's socket and root's writes in gVisor's memory come back with the machine.
    assert await sh(stack, mid, "sudo id -u && cat /etc/fleet-kept") == (0, "0\nkept\n", "")


async def test_the_stage_binds_every_source_in_one_mount_a_blank_in_a_path_included(
    tmp_path: Path,
) -> None:
    """STAGE_SCRIPT in a mount namespace of its own: a directory's and a file's sources, one of
    them under a path with a blank, are each found at their staged names."""
    where = tmp_path / "a data dir"
    (where / "home").mkdir(parents=True)
    (where / "home" / "mark").write_text("home")
    (where / "daemon.log").write_text("log")
    spec = {
        "root": {"path": str(where / "home")},
        "mounts": [
            {"destination": "/run/log", "type": "bind", "source": str(where / "daemon.log")}
        ],
        "linux": id_mappings(200001, 200000),
    }
    (tmp_path / "config.json").write_text(json.dumps(spec))
    _, words = staged_bundle(tmp_path)
    stage = str(tmp_path / "stage")
    words = [stage, *words[1:]]
    (tmp_path / "run" / FSTAB).write_text(
        (tmp_path / "run" / FSTAB).read_text().replace(STAGE, stage)
    )
    read = f'cat "{stage}/root/mark" "{stage}/0"'
    done = await asyncio.create_subprocess_exec(
        "unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", STAGE_SCRIPT + read,
        "stage", *words, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(done.communicate(), 30)
    assert (done.returncode, out) == (0, b"homelog"), err
