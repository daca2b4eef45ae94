"""A helper container (providers/docker/runtime.py ``helper_container``) is gone before a
cancellation that came during its removal goes on: the caller's cleanup that follows (a pool
slot's volumes removed) would otherwise find its volumes still in use and leave them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from providers.docker.runtime import helper_container


class Helper:
    def __init__(self) -> None:
        self.removing = asyncio.Event()
        self.release = asyncio.Event()
        self.removed = False

    async def delete(self, *, force: bool) -> None:
        self.removing.set()
        await self.release.wait()
        self.removed = True


class Engine:
    """What ``helper_container`` asks of aiodocker: a container made."""

    def __init__(self, helper: Helper) -> None:
        self.containers = self
        self.helper = helper

    async def create(self, config: dict[str, Any], name: str | None = None) -> Helper:
        return self.helper


async def test_a_cancel_during_a_helpers_removal_goes_on_once_it_is_removed() -> None:
    helper = Helper()

    async def job() -> None:
        async with helper_container(Engine(helper), {}, "fill a volume"):  # type: ignore[arg-type]
            pass

    task = asyncio.create_task(job())
    await asyncio.wait_for(helper.removing.wait(), 10)
    task.cancel()
    for _ in range(5):  # the loop's turns in which a cancellation that went on would end it
        await asyncio.sleep(0)
    assert not task.done()
    helper.release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert helper.removed
