"""controlplane.events.coalesce: a burst shares one run; a call during a run starts another."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.events.coalesce import Coalescer


async def test_a_burst_of_calls_shares_one_run() -> None:
    runs: list[int] = []
    c = Coalescer(quiet_s=0.05, max_s=1.0)

    async def work() -> None:
        runs.append(len(runs))

    await asyncio.gather(*(c.run("k", work) for _ in range(20)))
    assert runs == [0]


async def test_a_call_while_work_runs_starts_a_new_run_and_keys_are_independent() -> None:
    started, release = asyncio.Event(), asyncio.Event()
    runs: list[str] = []
    c = Coalescer(quiet_s=0.0, max_s=0.0)

    async def slow() -> None:
        runs.append("slow")
        started.set()
        await release.wait()

    async def quick() -> None:
        runs.append("quick")

    first = asyncio.create_task(c.run("k", slow))
    await started.wait()
    await c.run("k", quick)  # the key was released before `slow` ran: a run of its own
    await c.run("other", quick)
    release.set()
    await first
    assert runs == ["slow", "quick", "quick"]


async def test_every_caller_gets_the_runs_failure() -> None:
    c = Coalescer(quiet_s=0.01, max_s=0.1)

    async def broken() -> None:
        raise RuntimeError("push failed")

    results = await asyncio.gather(*(c.run("k", broken) for _ in range(3)),
                                   return_exceptions=True)  # fmt: skip
    assert [type(r) for r in results] == [RuntimeError] * 3
    with pytest.raises(RuntimeError):
        await c.run("k", broken)
