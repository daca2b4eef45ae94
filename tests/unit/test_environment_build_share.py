"""Concurrent callers of one build (environments/shared_builds.py ``SharedBuilds``): one build,
each caller hears its log, a late one starting with its last lines; the build outlives a caller
that gives up, not its holder. On a real engine: tests/integration/test_environment_builds.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from contracts.errors import ProviderError
from environments.shared_builds import SharedBuilds

DIGEST = "d" * 64


async def test_a_late_caller_hears_the_builds_last_lines_then_the_rest() -> None:
    started, go, heard = asyncio.Event(), asyncio.Event(), asyncio.Event()
    runs: list[int] = []

    async def build(tell: Callable[[str], None]) -> str:
        runs.append(1)
        tell("step 1")
        tell("step 2")
        started.set()
        await go.wait()
        tell("step 3")
        return "sha256:built"

    early: list[str] = []
    late: list[str] = []

    def late_say(line: str) -> None:
        late.append(line)
        if line == "step 2":
            heard.set()

    async with SharedBuilds() as shared:
        first = asyncio.create_task(shared.build(DIGEST, early.append, build))
        await asyncio.wait_for(started.wait(), timeout=5)
        second = asyncio.create_task(shared.build(DIGEST, late_say, build))
        await asyncio.wait_for(heard.wait(), timeout=5)  # replayed before it listens, at once
        assert len(shared) == 1
        go.set()
        got = await asyncio.wait_for(asyncio.gather(first, second), timeout=5)
        assert list(got) == ["sha256:built"] * 2
        assert runs == [1]
        assert early == ["step 1", "step 2", "step 3"]
        assert late == [f"environment {DIGEST[:12]}: already building; its last 2 line(s):",
                        "step 1", "step 2", "step 3"]  # fmt: skip
        assert len(shared) == 0  # forgotten once done: a later call builds (or hits the cache)


async def test_a_build_outlives_a_caller_that_gives_up_and_a_later_one_joins_it() -> None:
    started, go = asyncio.Event(), asyncio.Event()
    runs: list[int] = []

    async def build(tell: Callable[[str], None]) -> str:
        runs.append(1)
        started.set()
        await go.wait()
        return "sha256:built"

    async with SharedBuilds() as shared:
        gives_up = asyncio.create_task(shared.build(DIGEST, lambda _: None, build))
        await asyncio.wait_for(started.wait(), timeout=5)
        gives_up.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gives_up
        later = asyncio.create_task(shared.build(DIGEST, lambda _: None, build))
        go.set()
        assert await asyncio.wait_for(later, timeout=5) == "sha256:built"
        assert runs == [1]


async def test_closing_the_holder_cancels_and_joins_a_build_still_running() -> None:
    started = asyncio.Event()
    ended: list[str] = []

    async def build(tell: Callable[[str], None]) -> str:
        started.set()
        try:
            await asyncio.Event().wait()  # never set: only a cancellation ends it
        finally:
            ended.append("cleaned up")
        return "never"

    shared = SharedBuilds()
    async with shared:
        caller = asyncio.create_task(shared.build(DIGEST, lambda _: None, build))
        await asyncio.wait_for(started.wait(), timeout=5)
    assert ended == ["cleaned up"]  # joined by the close, not left running
    assert len(shared) == 0
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(caller, timeout=5)
    with pytest.raises(ProviderError):  # closed: no new build
        await shared.build("e" * 64, lambda _: None, build)
