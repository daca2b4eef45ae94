"""FLEET_EVENT_LOOP: which loop a service process runs on (controlplane/process/event_loop.py)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from controlplane.process import event_loop
from controlplane.settings import Settings, SettingsError


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_uvloop_is_the_default_and_runs_the_service() -> None:
    assert Settings.from_env({}).event_loop == "uvloop"
    assert event_loop.run(_loop_module(), "uvloop").startswith("uvloop")


def test_asyncio_is_the_standard_loop() -> None:
    settings = Settings.from_env({"FLEET_EVENT_LOOP": "asyncio"})
    assert event_loop.run(_loop_module(), settings.event_loop).startswith("asyncio")


def test_without_uvloop_a_service_still_starts_on_the_standard_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # what a failed import looks like
    assert event_loop.loop_factory("uvloop") == (None, "asyncio")
    assert event_loop.run(_loop_module(), "uvloop").startswith("asyncio")


def test_an_unknown_loop_is_refused_naming_the_variable() -> None:
    with pytest.raises(SettingsError, match="FLEET_EVENT_LOOP"):
        Settings.from_env({"FLEET_EVENT_LOOP": "trio"})
