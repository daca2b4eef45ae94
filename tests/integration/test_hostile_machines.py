"""Hostile machines against root's operations on their homes (base/hostile_fs.py), through the
platform's own methods: each machine plants what its own processes can (a link, a FIFO, a huge
file, a directory it swaps with a link in a tight loop; a device node the test places as root,
since a machine cannot make one), then calls the methods that make root act on its home. A
canary directory of root-owned host files must stay unchanged, and another tenant's machine
must still create and restart in its usual time.

The tenant tests take the provider as a parameter (tests/provider_param.py). The lock read and
the home's chown exist on ``local`` only: a ``docker`` machine's home is a volume the engine
mounts, on which root on the host does nothing by path. The machines claimed from the local
warm pool (its daemon's root found by its pool slot, its home moved in at the claim; a stopped
machine's start that adopts a pooled sandbox, given the home it has) run the same attacks, in
``TestLocalPool``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import pytest

from contracts.status import MachineStatus
from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.local.host import HOME_GIVEN
from providers.local.processes import machine_roots
from providers.local.supervision import STOP_GRACE_S
from tests.docker_env import docker_gateway, docker_image, home_of, inspect, remove_containers
from tests.environments import refresh_code
from tests.hostile import SWAP, Canary
from tests.integration.test_isolation import ready, sh
from tests.integration.test_warm_pool import pooled, slot_of, up_slots
from tests.provider_param import nats_server, provider
from tests.waiters import wait_until

#: How long a machine of another tenant may take to be ready (it takes a few seconds).
USUAL_S = 60.0
#: Restarts a hostile machine asks for at once: more than the provisioner's worker threads.
RESTARTS = 7
#: In a hostile machine, in the background: a FIFO in place of the daemon's lock, put back
#: whenever the daemon replaces it.
FIFO_LOCK = ("cd ~/.fleet && while :; do [ -p daemon.lock ] || "
             "{ rm -f daemon.lock; mkfifo daemon.lock; }; sleep 0.2; done")  # fmt: skip
HomeOf = Callable[[str], Awaitable[Path]]
LOCAL_ONLY = pytest.mark.parametrize("provider", ["local"])
__all__ = [  # fixtures, re-exported for pytest
    "docker_gateway",
    "docker_image",
    "nats_server",
    "provider",
    "remove_containers",
]


@pytest.fixture
def canary(tmp_path: Path) -> Canary:
    return Canary(tmp_path / "host-secrets")


async def test_a_fifo_lock_and_restarts_stall_no_other_tenant(
    stack: FleetClient, settings: Settings, provider: str
) -> None:
    async def home(mid: str) -> Path:
        return local_home(settings, mid)

    await fifo_lock_and_restarts(
        stack, settings, provider, home_of if provider == "docker" else home
    )


def local_home(settings: Settings, mid: str) -> Path:
    return settings.data_path / "machines" / mid / "home"


async def fifo_lock_and_restarts(
    stack: FleetClient, settings: Settings, provider: str, home_of: HomeOf
) -> None:
    mallory = await ready(stack, "mallory", provider)
    await stack.start_process(mallory, ["sh", "-c", FIFO_LOCK])  # outlives the call
    lock = await home_of(mallory) / ".fleet" / "daemon.lock"
    await wait_until(lambda: lock.is_fifo(), timeout=10)
    async with asyncio.timeout(USUAL_S):  # each answers: none holds a provisioner's thread
        answers = await asyncio.gather(
            *(stack.restart_machine(mallory) for _ in range(RESTARTS)), return_exceptions=True
        )
    assert [a for a in answers if isinstance(a, BaseException)] == []
    async with asyncio.timeout(USUAL_S):  # another machine is served as usual meanwhile
        bob = await ready(stack, "bob", provider)
        await stack.restart_machine(bob)
    # And a stop of the hostile machine really ends it.
    await stack.stop_machine(mallory)
    stopped = await stack.wait_for(mallory, ("stopped",), timeout_s=STOP_S)
    assert stopped.status is MachineStatus.STOPPED, stopped.status_reason
    await wait_until(lambda: ended(settings, mallory, provider), timeout=STOP_S)


#: A stop's SIGTERM grace and more: a machine still running after it was not stopped.
STOP_S = STOP_GRACE_S + 10


async def ended(settings: Settings, mid: str, provider: str) -> bool:
    """No process of the machine runs any more on its provider."""
    if provider == "local":
        return machine_roots(settings.data_path / "machines" / mid, mid) == []
    return await inspect(mid) is None


async def test_a_machine_cannot_make_a_device_node_or_a_hard_link_out(
    stack: FleetClient, provider: str
) -> None:
    await cannot_make_a_device_node(stack, provider)


async def cannot_make_a_device_node(stack: FleetClient, provider: str) -> None:
    mid = await ready(stack, "mallory", provider)
    out = await sh(stack, mid, "mknod ~/zero c 1 5; mkfifo ~/fifo && echo fifo; echo done")
    assert "Operation not permitted" in out
    assert "fifo" in out  # FIFOs it can make (the suite's other kinds)
    # Nor a hard link to a file of the system it sees (another mount than its home).
    out = await sh(stack, mid, "ln /usr/bin/env ~/env && echo linked; echo done")
    assert "linked" not in out
    assert "cross-device" in out


async def plant_traps(stack: FleetClient, mid: str, home: Path, canary: Canary) -> None:
    """In the machine's ``~/k``: links to the canary's file and directory, a FIFO, a 10 GB
    sparse file (all made by the machine), and a device node (placed as root: a machine
    cannot make one, see above)."""
    out = await sh(stack, mid, f"mkdir -p ~/k && cd ~/k && ln -s {canary.a_file} link && "
                   f"ln -s {canary.root} dirlink && mkfifo fifo && truncate -s 10G big && "
                   "echo done")  # fmt: skip
    assert out.rstrip().endswith("done")
    os.mknod(home / "k" / "zero", 0o666 | 0o020000, os.makedev(1, 5))


@LOCAL_ONLY
async def test_give_home_on_refresh_code_and_start_follows_nothing(
    stack: FleetClient, settings: Settings, canary: Canary
) -> None:
    mid = await ready(stack, "mallory", "local")
    home = local_home(settings, mid)
    await plant_traps(stack, mid, home, canary)
    await stack.refresh_code(mid)  # installs code as root, then gives the home to the machine
    assert canary.changed() == {}
    await stack.stop_machine(mid)
    await stack.wait_for(mid, ("stopped",), timeout_s=STOP_S)
    assert await ended(settings, mid, "local")
    # As if the home were just copied: a home is given once, not at each start.
    (home.parent / HOME_GIVEN).unlink()
    await stack.start_machine(mid)  # gives the home to the machine again
    started = await stack.wait_for(mid, ("ready", "failed"), timeout_s=USUAL_S)
    assert started.status is MachineStatus.READY, started.status_reason
    assert canary.changed() == {}
    uid = (home / "k" / "fifo").lstat().st_uid
    assert uid != 0
    assert (home / "k" / "big").stat().st_uid == uid
    assert (home / "k" / "zero").lstat().st_uid == 0  # a device node is never given away


@LOCAL_ONLY
async def test_a_restart_or_a_start_walks_the_home_no_more(
    stack: FleetClient, settings: Settings
) -> None:
    """The home is given to the machine's uid once (made, copied, or another uid), not walked
    again at each start: a home of millions of entries was walked, as root, on the
    provisioner's default executor (the one that starts machines), at every stop and start. A
    file of root's put in the home afterwards is the probe: a walk would give it away."""
    mid = await ready(stack, "many-starts", "local")
    probe = local_home(settings, mid) / "probe"
    probe.touch()
    await refresh_code(stack, mid)
    await stack.stop_machine(mid)
    await stack.wait_for(mid, ("stopped",), timeout_s=STOP_S)
    await stack.start_machine(mid)
    started = await stack.wait_for(mid, ("ready", "failed"), timeout_s=USUAL_S)
    assert started.status is MachineStatus.READY, started.status_reason
    assert probe.stat().st_uid == 0  # walked by none of them


@LOCAL_ONLY
async def test_give_home_while_the_machine_swaps_a_dir_with_a_link(
    stack: FleetClient, settings: Settings, canary: Canary
) -> None:
    mid = await ready(stack, "mallory", "local")
    home = local_home(settings, mid)
    script = ("mkdir -p ~/d && cd ~/d && for i in $(seq 2000); do : > f$i; done && "
              f"ln -s {canary.root} ~/l && echo done")  # fmt: skip
    assert (await sh(stack, mid, script, timeout_s=60)).rstrip().endswith("done")
    await stack.start_process(mid, [sys.executable, "-c", SWAP, str(home / "d"), str(home / "l")],
                              tag="swap")  # fmt: skip
    await wait_until(lambda: (home / "l").is_dir() and not (home / "l").is_symlink(), timeout=10)
    for _ in range(8):  # each walk of the old code's had about even odds to go astray
        await refresh_code(stack, mid)  # the next waits for the daemon the first restarted
    assert canary.changed() == {}


@LOCAL_ONLY
async def test_archive_removes_the_home_and_follows_nothing(
    stack: FleetClient, settings: Settings, canary: Canary
) -> None:
    """``archived`` only once every process has exited and the files are gone; the removal
    (as root) follows none of the links the machine planted, nor a directory it was swapping
    with a link when the archive came (its processes end first)."""
    mid = await ready(stack, "mallory", "local")
    home = local_home(settings, mid)
    script = (f"mkdir -p ~/k/d && cd ~/k && ln -s {canary.a_file} link && "
              f"ln -s {canary.root} dirlink && mkfifo fifo && ln -s {canary.root} l && "
              "for i in $(seq 200); do : > d/f$i; done && echo done")  # fmt: skip
    assert (await sh(stack, mid, script, timeout_s=60)).rstrip().endswith("done")
    os.mknod(home / "k" / "zero", 0o666 | 0o020000, os.makedev(1, 5))  # as root: see above
    await stack.start_process(mid, [sys.executable, "-c", SWAP, str(home / "k" / "d"),
                                    str(home / "k" / "l")], tag="swap")  # fmt: skip
    archiving = await stack.archive_machine(mid)
    assert archiving.status is MachineStatus.ARCHIVING
    archived = await stack.wait_for(mid, ("archived",), timeout_s=STOP_S)
    assert archived.status is MachineStatus.ARCHIVED
    assert await ended(settings, mid, "local")  # nothing of it runs once it says archived
    assert not home.exists()
    assert not (settings.data_path / "machines" / mid / "code").exists()
    assert (settings.data_path / "machines" / mid / "daemon.log").exists()  # the platform's
    assert canary.changed() == {}


@LOCAL_ONLY
class TestLocalPool:
    """The machines come from the local warm pool (one pooled sandbox, kept up)."""

    @pytest.fixture
    def stack_settings(self, settings: Settings) -> Settings:
        return msgspec.structs.replace(settings, warm_pool="local=1", warm_pool_min_available_mb=0)

    async def test_a_claimed_machine_with_a_fifo_lock_stalls_no_other_tenant(
        self, stack: FleetClient, settings: Settings
    ) -> None:
        slot = await pooled(settings)
        claimed: list[str] = []

        async def home(mid: str) -> Path:
            claimed.append(mid)
            return local_home(settings, mid)

        await fifo_lock_and_restarts(stack, settings, "local", home)
        assert slot_of(settings, claimed[0]) == slot  # the hostile one came from the pool

    async def test_a_start_that_adopts_a_pooled_sandbox_follows_nothing_in_the_home(
        self, stack: FleetClient, settings: Settings, canary: Canary
    ) -> None:
        """A stopped machine's home, full of traps, given to a pooled sandbox at its start: the
        chown walks it by descriptor, the bind is made of the home directory itself (nothing in
        it is looked up), and the sandbox's side is root's tmpfs, which no code of the machine
        ever ran in."""
        used = {await pooled(settings)}
        mid = await ready(stack, "mallory", "local")
        used.add(slot_of(settings, mid) or "")
        home = local_home(settings, mid)
        await plant_traps(stack, mid, home, canary)
        await stack.stop_machine(mid)
        await stack.wait_for(mid, ("stopped",), timeout_s=STOP_S)
        await wait_until(lambda: bool(up_slots(settings) - used), timeout=60)
        await stack.start_machine(mid)
        started = await stack.wait_for(mid, ("ready", "failed"), timeout_s=USUAL_S)
        assert started.status is MachineStatus.READY, started.status_reason
        assert slot_of(settings, mid) not in used  # adopted
        assert canary.changed() == {}
        uid = int((settings.data_path / "machines" / mid / "uid").read_text())
        assert (home / "k" / "fifo").lstat().st_uid == uid
        assert (home / "k" / "big").stat().st_uid == uid
        assert (home / "k" / "zero").lstat().st_uid == 0  # a device node is never given away
        assert (await sh(stack, mid, "readlink ~/k/link")).strip() == str(canary.a_file)
