"""A tenant's home of more entries than the provisioner may walk for its disk figure (the issue's
tenant made 3 million; here a bound set low, a home just past it): the measure counts up to the
bound and says "at least", runs in the machine's own cgroups (charged to it, not to the host's
root), and never takes a thread of the provisioner's default executor, which starts machines:
with that executor held, the measure still answers (it waited there before, for as long as the
walk ran, every minute). Where the home's file system keeps the figure itself (a btrfs
subvolume with quotas on), nothing walks. The bound's rule: tests/unit/test_hostile_fs.py; the
sampler keeping the last figure: tests/fast/test_machine_metrics.py."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import pytest
from structlog.testing import capture_logs

from base.version import SOURCE_ROOT
from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.base import UsageMeter, capability
from providers.disk_walk import WalkBound, home_disk, memory_group
from providers.local import LocalProvider
from providers.registry import disk_walk, docker_provider
from tests.docker_env import docker_gateway, docker_image, inspect, remove_containers
from tests.integration.test_isolation import ready, sh
from tests.provider_param import nats_server, provider

__all__ = [  # fixtures, re-exported for pytest
    "docker_gateway",
    "docker_image",
    "nats_server",
    "provider",
    "remove_containers",
]

#: The walk's bound here: the tenant's home holds more entries than this.
BOUND = 3_000
#: A file in the home on btrfs: its qgroup counts at least these bytes.
BIG = 4_000_000


@asynccontextmanager
async def measurer(settings: Settings, provider: str) -> AsyncIterator[UsageMeter]:
    """What measures a machine's use on a provider of the stack's machines, as a provisioner
    makes it, with the walk's bound."""
    settings = msgspec.structs.replace(settings, disk_walk_entries=BOUND, disk_walk_s=60.0)
    if provider == "docker":
        async with docker_provider(settings, SOURCE_ROOT) as docker:
            yield docker
        return
    local = LocalProvider(
        data_dir=settings.data_path, nats_url=settings.nats_url, environ={},
        uids=settings.sandbox_uid_range, disk_walk=disk_walk(settings),
    )  # fmt: skip
    meter = capability(local, UsageMeter)
    assert meter is not None
    yield meter


#: More than the default executor's threads (at most 32): each held, the rest queued.
HOLDERS = 40


@asynccontextmanager
async def default_executor_held() -> AsyncIterator[None]:
    """Every thread of the loop's default executor held for the block: nothing that waits for
    one gets it."""
    loop, release = asyncio.get_running_loop(), threading.Event()
    held = [loop.run_in_executor(None, release.wait) for _ in range(HOLDERS)]
    try:
        yield
    finally:
        release.set()
        await asyncio.gather(*held)


async def first_process_group(settings: Settings, provider: str, mid: str) -> str | None:
    """The memory group of the machine's first process, as the test finds it."""
    if provider == "docker":
        return memory_group(int((await inspect(mid))["State"]["Pid"]))
    pid = (settings.data_path / "machines" / mid / "daemon.pid").read_text().strip()
    return memory_group(int(pid))


async def test_a_home_past_the_walks_bound_is_measured_at_least_by_the_machine_itself(
    stack: FleetClient, settings: Settings, provider: str
) -> None:
    mid = await ready(stack, "many-files", provider)
    made = await sh(stack, mid, f"mkdir many && cd many && seq 1 {BOUND} | xargs touch && "
                    "echo made", 60)  # fmt: skip
    assert made.endswith("made\n"), made
    async with measurer(settings, provider) as meter:
        with capture_logs() as logs:
            async with default_executor_held():
                got = await asyncio.wait_for(meter.usage(mid, disk=True), 60)
    assert got is not None
    assert got.disk_bytes  # at least what the walk saw before its bound
    [bounded] = [e for e in logs if e["event"] == "metrics.disk_walk_bounded"]
    assert bounded["entries"] == BOUND
    assert bounded["at_least"] == got.disk_bytes
    # The walker ran in the machine's memory group: charged to the machine, held to its limits.
    expected = await first_process_group(settings, provider, mid)
    assert expected is not None
    assert bounded["charged_to"] == expected


@pytest.fixture
def quota_home(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A home past the bound on a loop-mounted btrfs with quotas on (a subvolume, as homes on
    copy-on-write are), and its qgroup's referenced bytes as ``btrfs qgroup show`` says them;
    unmounted after the test."""
    image, mount = tmp_path / "fs.img", tmp_path / "fs"
    with open(image, "wb") as f:
        f.truncate(300 << 20)
    mount.mkdir()
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        home = mount / "home"
        for argv in (["btrfs", "quota", "enable", str(mount)],
                     ["btrfs", "subvolume", "create", str(home)]):  # fmt: skip
            subprocess.run(argv, check=True, capture_output=True)
        (home / "many").mkdir()
        for n in range(BOUND + 1):
            (home / "many" / str(n)).touch()
        (home / "big").write_bytes(b"\1" * BIG)
        subprocess.run(["sync"], check=True)
        shown = subprocess.run(["btrfs", "qgroup", "show", "--raw", str(home)], check=True,
                               capture_output=True, text=True).stdout  # fmt: skip
        [referenced] = [int(line.split()[1]) for line in shown.splitlines()
                        if line.endswith(" home")]  # fmt: skip
        yield home, referenced
    finally:
        subprocess.run(["umount", str(mount)], check=True)


async def test_a_home_on_btrfs_with_quotas_is_measured_by_its_qgroup_never_walked(
    quota_home: tuple[Path, int],
) -> None:
    home, referenced = quota_home
    with capture_logs() as logs:
        use, size = await home_disk(home, WalkBound(10, 60.0), None)
    assert use is not None
    assert (use.bytes, use.complete) == (referenced, True)
    assert use.bytes >= BIG
    assert size is not None
    assert [e for e in logs if e["event"].startswith("metrics.disk_walk")] == []
