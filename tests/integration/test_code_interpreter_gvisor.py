"""The code interpreter on gvisor machines (docs/code-interpreter.md), with real kernels on real
runsc sandboxes: state across calls and the interpreter's rules (tests/code_checks.py), a
kernel that goes on across a pause and resume with its state and its execution count, three
forks with memory that each go on alone from the source's variables, and a machine made from a
memory snapshot that has them. A package ``pip install``ed before the pause, or in the source
before the forks, is imported after it, by the kernel that went on and by a new one.

One stack for the module (tests/gvisor_stack.py); each test makes the machines it pauses or
forks. The interpreter's own behaviours on one machine: tests/integration/test_code_interpreter.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.daemon.code import CodeRunResult
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.code_checks import every_rule, make_wheel
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


async def installed(stack: FleetClient, mid: str, where: Path, module: str) -> None:
    """A wheel of ``module`` uploaded to the machine and ``%pip install``ed (not imported)."""
    wheel = make_wheel(where, module)
    await stack.upload(mid, wheel, wheel.name)
    got = await stack.machines_code_run(
        machine_id=mid, code=f"%pip install --no-index {wheel.name}"
    )
    assert got.error is None, got.stdout + got.stderr


async def imports(stack: FleetClient, mid: str, module: str) -> None:
    """``module`` imports in the machine's default kernel and in a new one."""
    code = f"import {module}\n{module}.N"
    assert main_text(await stack.machines_code_run(machine_id=mid, code=code)) == ["42"]
    new = await stack.machines_code_create_context(mid)
    fresh = await stack.machines_code_run(machine_id=mid, code=code, context_id=new.id)
    assert main_text(fresh) == ["42"]
    await stack.machines_code_delete_context(mid, new.id)


async def back(stack: FleetClient, mid: str) -> None:
    """Wait until the machine's daemon answers (after a resume or as a fork's first)."""
    await wait_until(lambda: answers(stack, mid), timeout=180, every=0.5)


@pytest.mark.timeout(600)
async def test_state_carries_across_calls_in_a_gvisor_machine(
    stack: FleetClient, tmp_path: Path
) -> None:
    mid = await ready_gvisor(stack, "gv-code")
    first = await stack.machines_code_run(machine_id=mid, code="x = 41")
    assert (first.results, first.error) == ([], None)
    second = await stack.machines_code_run(machine_id=mid, code="x + 1")
    assert main_text(second) == ["42"]
    bash = await stack.machines_code_run(machine_id=mid, code="echo hi", language="bash")
    assert ("".join(bash.stdout), bash.error) == ("hi\n", None)
    # Each kernel's channels are Unix sockets: loopback TCP connections restored by gVisor made
    # libzmq abort the daemon now and then (docs/code-interpreter.md).
    said = await stack.machines_code_run(
        machine_id=mid, code="grep -h '\"transport\"' ~/.fleet/kernels/*.json", language="bash"
    )
    assert "".join(said.stdout).split() == ['"transport":', '"ipc",'] * 2, said.stdout
    await every_rule(stack, mid, tmp_path)


@pytest.mark.timeout(900)
async def test_a_kernel_survives_a_pause_and_resume(stack: FleetClient, tmp_path: Path) -> None:
    mid = await ready_gvisor(stack, "gv-code-pause")
    await installed(stack, mid, tmp_path, "fleet_probe_paused")
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
    await imports(stack, mid, "fleet_probe_paused")


@pytest.mark.timeout(1200)
async def test_three_forks_with_memory_each_go_on_alone_from_the_sources_variables(
    stack: FleetClient, tmp_path: Path
) -> None:
    mid = await ready_gvisor(stack, "gv-code-fork")
    await installed(stack, mid, tmp_path, "fleet_probe_forked")
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
    await imports(stack, forks[0], "fleet_probe_forked")
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
