"""What a root command in a gvisor machine writes is read by the host as it is written, and
bounded there (base/bounded_output.py): on real runsc sandboxes with real daemons, a flood of
output keeps the provisioner's memory where it was, and a command that leaves a process holding
its output answers at its own end. The bounds themselves: tests/fast/test_bounded_output.py.

One stack for the module (tests/gvisor_stack.py), its services in this process: the
provisioner's memory is this process's. One gvisor machine for both tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import pytest_asyncio

from base.tasks import cancel_and_join
from contracts.daemon.rpc import ExecCommandResult
from contracts.errors import FleetError
from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.gvisor.runsc import OUTPUT_CAP
from tests.gvisor_stack import gvisor_settings, module_stack
from tests.integration.test_gvisor import ready_gvisor

__all__ = ["module_stack"]  # the fixture ``stack``, on this module's settings
pytestmark = pytest.mark.asyncio(loop_scope="module")
#: What the flood writes: far more than the provisioner may keep of it.
FLOOD = 2 << 30
#: How far the provisioner's resident memory may grow while the flood is read.
ALLOWED_GROWTH = 64 << 20


@pytest.fixture(scope="module")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with gvisor_settings(tmp_path_factory.mktemp("gvisor-output"), runtime="gvisor",
                         rpc_timeout_s=60.0) as made:  # fmt: skip
        yield made


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def machine(stack: FleetClient) -> str:
    return await ready_gvisor(stack, "gv-output")


def rss() -> int:
    """This process's resident memory, in bytes (the stack's services run in it)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


async def sample_peak(peak: list[int]) -> None:
    while True:
        peak[0] = max(peak[0], rss())
        await asyncio.sleep(0.02)


@pytest.mark.timeout(900)
async def test_a_root_commands_flood_of_output_keeps_the_provisioners_memory(
    stack: FleetClient, machine: str
) -> None:
    before = rss()
    peak = [before]
    sampler = asyncio.create_task(sample_peak(peak))
    try:
        got: ExecCommandResult | Exception = await stack.exec(
            machine, ["head", "-c", str(FLOOD), "/dev/zero"], user="root", timeout_s=600
        )
    except (FleetError, TimeoutError) as exc:  # still: how far the memory grew first
        got = exc
    finally:
        await cancel_and_join(sampler)
    assert peak[0] - before < ALLOWED_GROWTH, f"grew {(peak[0] - before) >> 20} MiB"
    assert isinstance(got, ExecCommandResult), got
    assert (got.exit_code, got.timed_out, got.truncated) == (0, False, True), got.stderr
    assert 0 < len(got.stdout) <= OUTPUT_CAP


@pytest.mark.timeout(300)
async def test_a_root_command_that_leaves_a_process_holding_its_output_answers_at_its_end(
    stack: FleetClient, machine: str
) -> None:
    """runsc hands the command's pipes to the sandbox: a process the command leaves behind
    keeps them open after ``runsc exec`` ends, and the answer must not wait for it."""
    got = await stack.exec(machine, ["sh", "-c", "sleep 100000 & echo started"], user="root",
                           timeout_s=30)  # fmt: skip
    assert (got.exit_code, got.stdout, got.timed_out) == (0, "started\n", False), got
