"""Forks with memory of a gvisor machine serving ``python3 -m http.server``, on a host that busy
processes load (as tests/cpuhog.py does to the suite), with a boot deadline far shorter than a
restored daemon takes there to report ready (``FLEET_BOOT_TIMEOUT_S`` of 0.1 s): a fork's daemon
runs from its restore on, and a loaded host only slows it, so no fork is failed by the clock
while its host says its daemon runs; each is `ready` and serves its own copy of the server.
The rules, on a manual clock: tests/fast/test_boot_deadline.py."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from contracts.bus.events import MachineFailed
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.cpuhog import spin
from tests.gvisor_stack import gvisor_settings, module_stack
from tests.integration.test_gvisor import ready_gvisor
from tests.integration.test_gvisor_fork_memory import WEB, serves
from tests.integration.test_gvisor_pause import events_of
from tests.waiters import wait_until

__all__ = ["module_stack"]  # the fixture ``stack``, on this module's settings
pytestmark = pytest.mark.asyncio(loop_scope="module")

#: Far shorter than a gvisor daemon on ptrace takes to report ready, loaded or not.
BOOT_TIMEOUT_S = 0.1
FORKS = 2


@pytest.fixture(scope="module")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with gvisor_settings(tmp_path_factory.mktemp("gvisor-fork-load"), runtime="gvisor",
                         boot_timeout_s=BOOT_TIMEOUT_S, rpc_timeout_s=60.0) as made:  # fmt: skip
        yield made


@contextmanager
def loaded_host(procs: int = 8) -> Iterator[None]:
    """Busy processes spinning, four for each of this host's 2 cores, while in the block."""
    hogs = [multiprocessing.Process(target=spin, args=(900.0,)) for _ in range(procs)]
    for hog in hogs:
        hog.start()
    try:
        yield
    finally:
        for hog in hogs:
            hog.terminate()
            hog.join()


@pytest.mark.timeout(1500)
async def test_forks_with_memory_on_a_loaded_host_are_ready_not_failed_by_the_clock(
    stack: FleetClient,
) -> None:
    # Its own boot already outlasts the deadline: its host's word keeps it.
    mid = await ready_gvisor(stack, "gv-fork-load")
    await stack.start_process(mid, ["python3", "-m", "http.server", str(WEB), "--bind",
                                    "127.0.0.1"], tag="web")  # fmt: skip
    await wait_until(lambda: serves(stack, mid), timeout=180, every=0.5)
    with loaded_host():
        forks = [m.id for m in await stack.fork_machine(mid, FORKS, memory=True)]
        for f in forks:
            got = await stack.wait_for(f, ["ready", "failed"], timeout_s=900)
            assert got.status == "ready", got.status_reason
            assert not await events_of(stack, f, MachineFailed)
        for f in forks:  # each serves its own copy of the source's server
            await wait_until(lambda f=f: serves(stack, f), timeout=300, every=0.5)
