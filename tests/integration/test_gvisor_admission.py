"""A paused gvisor machine is not resumed past its instance's ``maxRunningMachines``
(services/gateway/rpc/admission.py), on real runsc sandboxes with real daemons: neither by
``machines.resume`` nor by a wake on access (an exec), each refused with 1041 and the machine
left paused with no sandbox of it started. Every path, calls at once and the host's room, in
memory: tests/fast/test_admission.py.

One stack for the module (tests/gvisor_stack.py) and one pair of machines for both tests: A
paused, B (a fork of A) running, under a limit of 1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import pytest_asyncio

from contracts.bus.events import MachinePauseRequested, MachineResumed, MachineResumeRequested
from contracts.errors import RunningMachinesLimit
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.gvisor_stack import gvisor_settings, module_stack
from tests.integration.test_gvisor import READY_S, ready_gvisor, sandbox_processes
from tests.integration.test_gvisor_pause import events_of

__all__ = ["module_stack"]  # the fixture ``stack``, on this module's settings
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with gvisor_settings(tmp_path_factory.mktemp("gvisor-admission"), runtime="gvisor") as made:
        yield made


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def paused_past_limit(stack: FleetClient) -> tuple[str, str]:
    """(A, B): A paused, B running, their instance limited to 1 running machine."""
    a = await ready_gvisor(stack, "gv-admission")
    [fork] = await stack.fork_machine(a)
    b = await stack.wait_for(fork.id, ["ready", "failed"], timeout_s=READY_S)
    assert b.status == "ready", b.status_reason
    await stack.pause_machine(a)
    paused = await stack.wait_for(a, ["paused", "ready", "failed"], timeout_s=300)
    assert paused.status == "paused", paused.status_reason
    assert not sandbox_processes(a)
    # The stream serves the gateway's requests: an empty list of resume requests says so.
    assert len(await events_of(stack, a, MachinePauseRequested)) == 1
    await stack.set_limits(paused.instance_id, max_running_machines=1)
    return a, b.id


async def stays_paused(stack: FleetClient, a: str, b: str) -> None:
    """A is paused with no sandbox and no resume asked; B runs on."""
    assert (await stack.get_machine(a)).status == "paused"
    assert not sandbox_processes(a)
    assert await events_of(stack, a, MachineResumeRequested) == []
    assert await events_of(stack, a, MachineResumed) == []
    assert (await stack.get_machine(b)).status == "ready"
    assert sandbox_processes(b)


@pytest.mark.timeout(900)
async def test_a_resume_past_the_running_limit_is_refused_and_nothing_starts(
    stack: FleetClient, paused_past_limit: tuple[str, str]
) -> None:
    a, b = paused_past_limit
    with pytest.raises(RunningMachinesLimit) as refused:
        await stack.resume_machine(a)
    assert refused.value.code == 1041
    assert refused.value.data == {"limit": 1, "running": 1}
    await stays_paused(stack, a, b)


@pytest.mark.timeout(900)
async def test_a_wake_past_the_running_limit_is_refused_and_nothing_starts(
    stack: FleetClient, paused_past_limit: tuple[str, str]
) -> None:
    a, b = paused_past_limit
    with pytest.raises(RunningMachinesLimit) as refused:
        await stack.exec(a, ["echo", "awake"], timeout_s=60)
    assert refused.value.code == 1041
    await stays_paused(stack, a, b)
