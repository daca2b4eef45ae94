"""An auto-pipelining client's batches are tasks it owns (controlplane/redis_autopipe.py): its
close sends what is queued, waits for every batch under way, and leaves no task behind. Against
a real valkey: tests/integration/test_redis_autopipe.py."""

from __future__ import annotations

import asyncio
from typing import Any

from controlplane.redis_autopipe import AutoPipelineRedis


class HeldRedis(AutoPipelineRedis):
    """Answers each command with its own key, once ``release`` is set; talks to no server."""

    def __init__(self) -> None:
        super().__init__()
        self.sending = asyncio.Event()
        self.release = asyncio.Event()
        self.batches: list[int] = []

    async def _send(self, batch: list[Any]) -> None:
        self.batches.append(len(batch))
        self.sending.set()
        await self.release.wait()
        for args, _, fut in batch:
            fut.set_result(args[1])


def _batches() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "redis-autopipe"]


async def test_a_close_waits_for_the_batches_under_way_and_leaves_no_task() -> None:
    r = HeldRedis()
    callers = asyncio.gather(r.get("a"), r.get("b"))
    await asyncio.wait_for(r.sending.wait(), timeout=5)
    assert _batches()
    closing = asyncio.create_task(r.aclose())
    await asyncio.sleep(0)  # the close has begun; the batch still waits for its answer
    r.release.set()
    await asyncio.wait_for(closing, timeout=5)
    assert callers.done()
    assert list(await callers) == ["a", "b"]
    assert r.batches == [2]
    assert not _batches()
