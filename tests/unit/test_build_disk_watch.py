"""A build's disk watch (environments/build_limits.py ``Steps``), a Ticker's rounds: the running
step over the build's disk limit is removed and the build marked over it; the watch's task ends
with its owner. On a real engine: tests/integration/test_environment_limits.py."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import aiodocker
import pytest

from environments import build_limits
from environments.cache import BuildCache

STEP = "a" * 64


class Engine:
    """The engine's answers the watch asks for: a step's writes, its removal."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.deleted: list[str] = []
        self.removed = asyncio.Event()
        self.measured = asyncio.Event()
        self.containers = SimpleNamespace(container=self._container)

    def _container(self, cid: str) -> SimpleNamespace:
        async def delete(force: bool) -> None:
            self.deleted.append(cid)
            self.removed.set()

        return SimpleNamespace(delete=delete)

    async def _query_json(self, path: str, method: str, params: dict[str, str]) -> dict[str, Any]:
        if not path.endswith("/json"):
            return {}
        self.measured.set()
        return {"SizeRw": self.size}


def _steps(engine: Engine) -> build_limits.Steps:
    store = cast(BuildCache, SimpleNamespace(build_disk_mb=1))
    return build_limits.Steps(cast(aiodocker.Docker, engine), store)


def _watching() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "env-build-disk-watch"]


async def test_a_step_over_the_disk_limit_is_removed_and_the_watch_ends_with_the_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(build_limits, "DISK_POLL_S", 0.01)
    engine = Engine(size=2 * 1024 * 1024)
    async with _steps(engine) as steps:
        steps.heard(f" ---> Running in {STEP}")
        await asyncio.wait_for(engine.removed.wait(), timeout=5)
        assert steps.failed_as("") == "disk"
        assert _watching()
    assert engine.deleted == [STEP]
    assert not _watching()


async def test_a_step_within_the_limit_is_measured_and_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(build_limits, "DISK_POLL_S", 0.01)
    engine = Engine(size=1024)
    async with _steps(engine) as steps:
        steps.heard(f" ---> Running in {STEP}")
        await asyncio.wait_for(engine.measured.wait(), timeout=5)
    assert steps.current_bytes == 1024
    assert steps.failed_as("") is None
    assert engine.deleted == []
    assert not _watching()
