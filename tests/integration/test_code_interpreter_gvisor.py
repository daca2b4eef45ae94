"""The code interpreter on gvisor machines (docs/code-interpreter.md), with real kernels on real
runsc sandboxes: state across calls and the interpreter's rules (tests/code_checks.py), a
kernel that goes on across a pause and resume with its state and its execution count, three
forks with memory that each go on alone from the source's variables, and a machine made from a
memory snapshot that has them.

One stack for the module (tests/gvisor_stack.py); each test makes the machines it pauses or
forks. The interpreter's own behaviours on one machine: tests/integration/test_code_interpreter.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contracts.daemon_code import CodeRunResult
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.code_checks import every_rule
from tests.gvisor_stack import gvisor_settings, module_stack
from tests.integration.test_gvisor import answers, paused_and_resumed, ready_gvisor
from tests.waiters import wait_until

__all__ = ["module_stack"]  # the fixture ``stack``, on this module's settings
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with gvisor_settings(tmp_path_factory.mktemp("gvisor-code"), runtime="gvisor") as made:
        yield made


def main_text(result: CodeRunResult) -> list[str]:
    assert result.error is None, result.error
    return [r["text/plain"] for r in result.results if r.get("isMain")]


async def back(stack: FleetClient, mid: str) -> None:
    """Wait until the machine's daemon answers (after a resume or as a fork's first)."""
    await wait_until(lambda: answers(stack, mid), timeout=180, every=0.5)


@pytest.mark.timeout(600)
async def test_state_carries_across_calls_in_a_gvisor_machine(stack: FleetClient) -> None:
    mid = await ready_gvisor(stack, "gv-code")
    first = await stack.machines_code_run(machine_id=mid, code="x = 41")
    assert (first.results, first.error) == ([], None)
    second = await stack.machines_code_run(machine_id=mid, code="x + 1")
    assert main_text(second) == ["42"]
    bash = await stack.machines_code_run(machine_id=mid, code="echo hi", language="bash")
    assert ("".join(bash.stdout), bash.error) == ("hi\n", None)
    await every_rule(stack, mid)


@pytest.mark.timeout(900)
async def test_a_kernel_survives_a_pause_and_resume(stack: FleetClient) -> None:
    mid = await ready_gvisor(stack, "gv-code-pause")
    before = await stack.machines_code_run(machine_id=mid, code="import os\nx = 41\nos.getpid()")
    pid = main_text(before)
    await paused_and_resumed(stack, mid)
    await back(stack, mid)
    after = await stack.machines_code_run(machine_id=mid, code="x + 1")
    assert main_text(after) == ["42"]
    # The same kernel: its count goes on, and its process is the one that ran before.
    assert after.execution_count == (before.execution_count or 0) + 1
    same = await stack.machines_code_run(machine_id=mid, code="os.getpid()")
    assert main_text(same) == pid


@pytest.mark.timeout(1200)
async def test_three_forks_with_memory_each_go_on_alone_from_the_sources_variables(
    stack: FleetClient,
) -> None:
    mid = await ready_gvisor(stack, "gv-code-fork")
    source = await stack.machines_code_run(machine_id=mid, code="x = 41")
    assert source.error is None
    forks = [m.id for m in await stack.fork_machine(mid, 3, memory=True)]
    for f in forks:
        got = await stack.wait_for(f, ["ready", "failed"], timeout_s=600)
        assert got.status == "ready", got.status_reason
    for k, f in enumerate(forks, start=1):
        await back(stack, f)
        mine = await stack.machines_code_run(machine_id=f, code=f"x += {k}; x")
        assert main_text(mine) == [str(41 + k)]
        assert mine.execution_count == (source.execution_count or 0) + 1
    for k, f in enumerate(forks, start=1):  # each kept its own, untouched by the others
        assert main_text(await stack.machines_code_run(machine_id=f, code="x")) == [str(41 + k)]
    await back(stack, mid)
    assert main_text(await stack.machines_code_run(machine_id=mid, code="x")) == ["41"]


@pytest.mark.timeout(900)
async def test_a_machine_made_from_a_memory_snapshot_has_the_variables(
    stack: FleetClient,
) -> None:
    mid = await ready_gvisor(stack, "gv-code-snapshot")
    await stack.machines_code_run(machine_id=mid, code="x = 41")
    snapshot = await stack.snapshot_machine(mid, "warm", memory=True)
    await back(stack, mid)
    await stack.machines_code_run(machine_id=mid, code="x = 0")  # the source's, after it
    new = await stack.create_from_snapshot(snapshot.instance_id, snapshot.id)
    got = await stack.wait_for(new.id, ["ready", "failed"], timeout_s=600)
    assert got.status == "ready", got.status_reason
    await back(stack, new.id)
    assert main_text(await stack.machines_code_run(machine_id=new.id, code="x + 1")) == ["42"]
