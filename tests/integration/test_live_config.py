"""Live configuration through the whole stack on real daemons: env changes reach the .env on
disk without any refresh call, a burst of changes is one push per machine, and repos follow
(cloned when added, switched over a clean tree, a dirty tree and a removed repo left alone)."""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path

from contracts.bus import subjects
from contracts.bus.events import EnvPushed, ReposReconciled, decode_event
from contracts.bus.subjects import EventKind
from controlplane.bus import Bus
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import git
from tests.integration.test_pipeline import home_of
from tests.integration.test_refresh import env_of, ready_machine
from tests.waiters import subscribed, wait_until


async def test_an_env_change_lands_in_the_env_on_disk_without_a_refresh(
    stack: FleetClient, settings: Settings
) -> None:
    mid = await ready_machine(stack, "live-env")
    iid = (await stack.get_machine(mid)).instance_id
    await stack.set_env("GREETING", "hello", iid)
    await wait_until(lambda: "GREETING='hello'" in env_of(settings, mid), timeout=15)
    await stack.set_env("PLATFORM_WIDE", "yes")
    await wait_until(lambda: "PLATFORM_WIDE='yes'" in env_of(settings, mid), timeout=15)
    await stack.unset_env("GREETING", iid)
    await wait_until(lambda: "GREETING" not in env_of(settings, mid), timeout=15)


async def test_a_burst_of_twenty_sets_is_one_push_per_machine(
    stack: FleetClient, settings: Settings, bus: Bus
) -> None:
    mid = await ready_machine(stack, "burst")
    iid = (await stack.get_machine(mid)).instance_id
    async with subscribed(bus.nc, subjects.event(EventKind.ENV_PUSHED, mid)) as pushes:
        for n in range(20):
            await stack.set_env("N", str(n), iid)
        first = decode_event((await pushes.next(timeout=15)).data)
        assert isinstance(first, EnvPushed)
        assert "N='19'" in env_of(settings, mid)  # the one push carried the last value
        # The positive signal that the burst is over: a later change's own push. Had the
        # burst been pushed twice, its second push would arrive before this one.
        await stack.set_env("AFTER", "1", iid)
        second = decode_event((await pushes.next(timeout=15)).data)
        assert isinstance(second, EnvPushed)
        assert "AFTER='1'" in env_of(settings, mid)
        assert second.env_sha256 != first.env_sha256


async def reconciled(bus: Bus, mid: str, change: Awaitable[object]) -> ReposReconciled:
    async with subscribed(bus.nc, subjects.event(EventKind.REPOS_RECONCILED, mid)) as inbox:
        await change
        event = decode_event((await inbox.next(timeout=30)).data)
    assert isinstance(event, ReposReconciled)
    return event


async def test_repos_follow_on_a_running_machine_and_a_dirty_tree_is_left_alone(
    stack: FleetClient, settings: Settings, bus: Bus, bare_repo: Path
) -> None:
    mid = await ready_machine(stack, "live-repos")
    iid = (await stack.get_machine(mid)).instance_id
    url = str(bare_repo)
    added = await reconciled(bus, mid, stack.add_repo(iid, url, "main", "app"))
    assert added.cloned == ["app"]
    work = home_of(settings, mid) / "app"
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=work) == "main"

    (work / "README").write_text("my unsaved work\n")  # a user's uncommitted change
    dirty = await reconciled(bus, mid, stack.add_repo(iid, url, "feature", "app"))
    (conflict,) = dirty.conflicts
    assert conflict.path == "app"
    assert "uncommitted" in conflict.reason
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=work) == "main"
    assert (work / "README").read_text() == "my unsaved work\n"

    git("checkout", "--", "README", cwd=work)  # clean again: the next change switches
    switched = await reconciled(bus, mid, stack.add_repo(iid, url, "feature", "app"))
    assert switched.switched == ["app"], switched.conflicts
    assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=work) == "feature"
    assert (work / "feature.txt").exists()

    removed = await reconciled(bus, mid, stack.remove_repo(iid, "app"))
    assert removed.left_in_place == ["app"]
    assert (work / "feature.txt").exists()  # never deleted
