"""A host-side git command's disk watch (environments/host_git.py), a Ticker's rounds: once the
checkout holds more than the limit, the command's whole session is ended; the watch's task
ends with the command. Through a real clone: tests/integration/test_environment_limits.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

from environments import host_git


def _watching() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "git-disk-watch"]


async def _sleeper() -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec("sleep", "600", start_new_session=True)


async def test_a_checkout_over_its_limit_ends_the_command(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(bytes(2048))
    proc = await _sleeper()
    watch = host_git._DiskWatch(tmp_path, 1024, proc)
    async with watch.ticker():
        await asyncio.wait_for(proc.wait(), timeout=10)
        assert watch.over
    assert not _watching()


async def test_a_checkout_within_its_limit_is_left_to_run(tmp_path: Path) -> None:
    (tmp_path / "small").write_bytes(bytes(512))
    proc = await _sleeper()
    try:
        watch = host_git._DiskWatch(tmp_path, 1024, proc)
        async with watch.ticker():
            await watch._measure()  # a round of its own, after the first
        assert not watch.over
        assert proc.returncode is None
        assert not _watching()
    finally:
        await host_git._end(proc)
