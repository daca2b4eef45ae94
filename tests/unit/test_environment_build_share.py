"""Concurrent callers of one build (environments/build.py ``_shared``): one build, each caller
hears its log, a late one starting with its last lines. On a real engine:
tests/integration/test_environment_builds.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from environments import build as b

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

    first = asyncio.create_task(b._shared(DIGEST, early.append, build))
    await asyncio.wait_for(started.wait(), timeout=5)
    second = asyncio.create_task(b._shared(DIGEST, late_say, build))
    await asyncio.wait_for(heard.wait(), timeout=5)  # replayed before it listens, at once
    go.set()
    assert await asyncio.wait_for(asyncio.gather(first, second), timeout=5) == ["sha256:built"] * 2
    assert runs == [1]
    assert early == ["step 1", "step 2", "step 3"]
    assert late == [f"environment {DIGEST[:12]}: already building; its last 2 line(s):",
                    "step 1", "step 2", "step 3"]  # fmt: skip
    assert DIGEST not in b._inflight
