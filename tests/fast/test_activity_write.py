"""``FLEET_ACTIVITY_WRITE_S``: how often the gateway writes a machine's activity (what auto-stop
counts), read from the gateway's settings. The rule it feeds: tests/fast/test_clock_rules.py."""

from __future__ import annotations

import msgspec
import pytest

from controlplane.settings import Settings
from tests.fast.conftest import World


@pytest.fixture(params=[(0.0, True), (3600.0, False)], ids=["every-call", "once-an-hour"])
def written_again(request: pytest.FixtureRequest) -> tuple[float, bool]:
    """The setting, and whether a second call right after the first is written again."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def settings(settings: Settings, written_again: tuple[float, bool]) -> Settings:
    return msgspec.structs.replace(settings, activity_write_s=written_again[0])


async def test_the_gateway_writes_activity_as_often_as_its_setting_says(
    world: World, written_again: tuple[float, bool]
) -> None:
    machine = await world.ready_machine()

    async def call_and_read() -> float:
        await world.rpc("machines.exec", {"machineId": machine.id, "command": ["true"]})
        last = (await world.store.stops.last_activity([machine.id]))[machine.id]
        assert last is not None  # every call is activity
        return last

    first = await call_and_read()
    again = await call_and_read()
    assert (again > first) is written_again[1]
