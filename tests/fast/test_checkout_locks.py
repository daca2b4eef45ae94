"""environments/sources.py ``checkout`` under the process's locks (SharedBuilds.checkouts): one
git at a time in a cache directory, two directories at once, no lock kept once all are done.
git itself is a fake here; the real one: tests/integration/test_environment_builds.py."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pytest

from contracts.models import Repo
from environments import host_git, sources
from environments.host_git import CloneLimits
from environments.shared_builds import SharedBuilds


async def test_one_checkout_per_directory_at_a_time_and_two_directories_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running: Counter[Path] = Counter()
    peak: Counter[Path] = Counter()
    both_in, go = asyncio.Event(), asyncio.Event()

    async def git(args: list[str], env: Mapping[str, str] | None, limits: CloneLimits,
                  tree: Path) -> str:  # fmt: skip
        running[tree] += 1
        peak[tree] = max(peak[tree], running[tree])
        if len(+running) == 2:
            both_in.set()
        await go.wait()
        running[tree] -= 1
        return ""

    monkeypatch.setattr(host_git, "run", git)
    one = Repo(url="https://git.example/one.git", branch="main", path="one")
    two = Repo(url="https://git.example/two.git", branch="main", path="two")
    cache = tmp_path / "checkouts"
    async with SharedBuilds() as shared:
        calls = [asyncio.create_task(sources.checkout(repo, cache, locks=shared.checkouts))
                 for repo in (one, one, two)]  # fmt: skip
        await asyncio.wait_for(both_in.wait(), timeout=5)
        assert sorted(running.values()) == [1, 1]  # one's second call waits for its first
        assert len(shared.checkouts) == 2
        go.set()
        first, again, other = await asyncio.wait_for(asyncio.gather(*calls), timeout=5)
    assert first == again != other
    assert peak == {first: 1, other: 1}
    assert len(shared.checkouts) == 0  # nothing kept per directory once done
