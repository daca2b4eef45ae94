"""``machines.watch`` and ``machines.metrics`` on gvisor machines (real runsc sandboxes,
tests/gvisor_stack.py): gVisor's own kernel implements inotify for its file systems, so a watch
sees an exec's changes in the machine as on the host's kernel; a watch of a machine that is
paused ends, telling its client why, before the machine's daemon lets its connection go; and a
machine's load shows in its samples (its cgroup's CPU time, runsc's own memory figure)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.gvisor_stack import gvisor_settings, module_stack
from tests.integration.test_gvisor import ready_gvisor
from tests.metrics_checks import shows_its_load
from tests.watch_checks import sees_an_execs_changes, watching

__all__ = ["module_stack"]  # the fixture ``stack``, on this module's settings
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with gvisor_settings(tmp_path_factory.mktemp("gvisor-watch"), runtime="gvisor") as made:
        yield made


async def test_a_watch_on_a_gvisor_machine_sees_an_execs_changes(stack: FleetClient) -> None:
    mid = await ready_gvisor(stack, "gv-watch")
    await sees_an_execs_changes(stack, mid)


async def test_a_watch_on_a_machine_that_is_paused_ends_and_says_why(stack: FleetClient) -> None:
    mid = await ready_gvisor(stack, "gv-watch-pause")
    await stack.exec(mid, ["mkdir", "-p", "w"])
    async with watching(stack, mid, "w", marker="ready") as w:
        await stack.pause_machine(mid)
        end = await w.ended(timeout_s=120)
    assert end.reason == "paused", end
    paused = await stack.wait_for(mid, ["paused", "ready", "failed"], timeout_s=300)
    assert paused.status == "paused", paused.status_reason


async def test_a_gvisor_machine_under_load_shows_it(stack: FleetClient) -> None:
    mid = await ready_gvisor(stack, "gv-metrics")
    took = await shows_its_load(stack, mid, timeout_s=90, guest_clock=True)
    print(f"gvisor: load seen in machines.metrics {took:.1f} s after it started")
