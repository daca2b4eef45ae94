"""OwnedTasks: a set of tasks that its owner joins on close, draining first; one task's failure
is logged at its boundary and ends no other; the owner's cancellation is never swallowed."""

from __future__ import annotations

import asyncio
import inspect

import pytest
from structlog.testing import capture_logs

from base.tasks import OwnedTasks, finished


async def test_close_lets_running_tasks_finish_within_the_drain() -> None:
    tasks = OwnedTasks("t", drain_s=30.0)
    release, finished = asyncio.Event(), asyncio.Event()

    async def work() -> None:
        await release.wait()
        finished.set()

    tasks.spawn(work())
    await asyncio.sleep(0)
    closing = asyncio.create_task(tasks.close())
    await asyncio.sleep(0)
    assert not closing.done()  # it waits for the task, not cancelling it
    release.set()
    await asyncio.wait_for(closing, 10)
    assert finished.is_set()
    assert len(tasks) == 0


async def test_past_the_drain_what_is_left_is_cancelled_and_joined() -> None:
    tasks = OwnedTasks("t", drain_s=0.01)
    cancelled = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = tasks.spawn(stuck())
    await asyncio.wait_for(tasks.close(), 10)
    assert cancelled.is_set()
    assert task.done()  # joined: nothing is left behind
    assert len(tasks) == 0


async def test_close_twice_is_safe_and_a_closed_set_takes_no_new_task() -> None:
    async with OwnedTasks("t") as tasks:
        tasks.spawn(asyncio.sleep(0))
    await tasks.close()  # the second close: nothing to do, no error
    late = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="closed"):
        tasks.spawn(late)
    assert inspect.getcoroutinestate(late) == inspect.CORO_CLOSED  # never "never awaited"


async def test_a_failing_task_is_logged_with_its_context_and_the_others_go_on() -> None:
    tasks = OwnedTasks("t", drain_s=30.0, failed_event="thing.failed")
    ran_on = asyncio.Event()

    async def fails() -> None:
        raise ValueError("broken")

    async def other() -> None:
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        ran_on.set()

    with capture_logs() as logs:
        failing = tasks.spawn(fails(), name="bad", request="r-1")
        tasks.spawn(other())
        await tasks.close()
    assert ran_on.is_set()
    assert failing.done()
    assert isinstance(failing.exception(), ValueError)
    failed = [e for e in logs if e["event"] == "thing.failed"]
    assert len(failed) == 1
    assert failed[0]["task"] == "bad"
    assert failed[0]["request"] == "r-1"
    assert "broken" in failed[0]["error"]


async def test_a_cancelled_task_is_not_a_failure() -> None:
    tasks = OwnedTasks("t", failed_event="thing.failed")
    with capture_logs() as logs:
        task = tasks.spawn(asyncio.Event().wait())
        await asyncio.sleep(0)
        task.cancel()
        await tasks.close()
    assert not [e for e in logs if e["event"] == "thing.failed"]


async def test_the_owners_cancellation_propagates_and_still_joins_every_task() -> None:
    tasks = OwnedTasks("t", drain_s=None)  # would wait for ever
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def stuck() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    task = tasks.spawn(stuck())
    await started.wait()
    owner = asyncio.create_task(tasks.close())
    await asyncio.sleep(0)
    owner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(owner, 10)
    assert cancelled.is_set()
    assert task.done()


async def test_finished_outlasts_two_cancellations_then_lets_them_go_on() -> None:
    """The cleanup ends whole however often its caller is cancelled; its failure after a
    cancellation is logged, and the cancellation is what the caller sees."""
    release = asyncio.Event()
    ended: list[str] = []

    async def cleanup() -> None:
        await release.wait()
        ended.append("cleanup")
        raise OSError("the cleanup's own failure")

    caller = asyncio.create_task(finished(cleanup()))
    await asyncio.sleep(0)
    caller.cancel()
    await asyncio.sleep(0)
    caller.cancel()
    await asyncio.sleep(0)
    assert not caller.done()  # still waiting for the cleanup
    release.set()
    with capture_logs() as logs, pytest.raises(asyncio.CancelledError):
        await caller
    assert ended == ["cleanup"]
    assert [(e["event"], e["error"]) for e in logs] == [
        ("task.cleanup_failed_while_cancelled", 'OSError("the cleanup\'s own failure")')
    ]
