"""A docker source's pause for copies (providers/docker/copy.py ``Pauses``): copies of one
container at once share one pause, which ends with the last of them, even a cancelled one; a
container that does not run is not paused; one paused by someone else is refused."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import aiodocker
import pytest

from contracts.errors import ProviderError
from providers.docker.copy import Pauses


class Container:
    """The calls ``Pauses`` makes of an aiodocker container, recorded."""

    def __init__(self, *, running: bool = True, paused: bool = False) -> None:
        self.id = "c0ffee0123456789"
        self.running, self.paused = running, paused
        self.calls: list[str] = []
        self.resumed = asyncio.Event()

    async def pause(self) -> None:
        self.calls.append("pause")
        if not self.running or self.paused:
            raise aiodocker.DockerError(409, "Container is not running, or paused already")
        self.paused = True

    async def unpause(self) -> None:
        self.calls.append("unpause")
        self.paused = False
        self.resumed.set()

    async def show(self) -> dict[str, Any]:
        return {"State": {"Running": self.running, "Paused": self.paused}}

    def __getitem__(self, key: str) -> Any:  # what inspect said when the container was got
        return {"State": {"Running": self.running, "Paused": self.paused}}[key]


def held(pauses: Pauses, c: Container) -> Any:
    return pauses.held(cast(aiodocker.containers.DockerContainer, c))


async def test_copies_at_once_share_one_pause_that_ends_with_the_last() -> None:
    pauses, c = Pauses(), Container()
    first_in, second_in, first_done = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with held(pauses, c) as paused:
            assert paused
            first_in.set()
            await second_in.wait()
        first_done.set()

    async def second() -> None:
        await first_in.wait()
        async with held(pauses, c) as paused:
            assert paused
            second_in.set()
            await first_done.wait()
            assert c.paused  # the first left; this copy still holds it paused

    async with asyncio.timeout(5):
        await asyncio.gather(first(), second())
    assert c.calls == ["pause", "unpause"]
    assert not c.paused


async def test_a_cancelled_copy_resumes_its_source() -> None:
    pauses, c = Pauses(), Container()
    inside = asyncio.Event()

    async def copy() -> None:
        async with held(pauses, c):
            inside.set()
            await asyncio.Event().wait()  # until cancelled

    task = asyncio.create_task(copy())
    async with asyncio.timeout(5):
        await inside.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await c.resumed.wait()  # the shielded unpause finishes on its own
    assert c.calls == ["pause", "unpause"]


async def test_a_container_not_running_is_not_paused_and_another_pause_is_refused() -> None:
    pauses = Pauses()
    stopped = Container(running=False)
    async with held(pauses, stopped) as paused:
        assert not paused
    assert stopped.calls == ["pause"]  # tried, refused: nothing to resume
    theirs = Container(paused=True)
    with pytest.raises(ProviderError, match="paused by another copy"):
        async with held(pauses, theirs):
            pass
    assert theirs.paused  # left as it was
    await pauses.resume_stale(cast(aiodocker.containers.DockerContainer, theirs))
    assert not theirs.paused
