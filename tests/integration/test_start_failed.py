"""A failed machine that its provider made is started again with ``machines.start``, with no
rebuild: real services, real daemons (``local``, the namespaces runtime). One fails at its
boot (its sandbox killed while it boots: the boot watchdog fails it once its window runs out
and its host says its daemon does not run), then starts to ``ready`` with its home as it was;
one failed while its daemon still ran has that daemon ended before its start. The rules, in
memory: tests/fast/test_stop_start.py."""

from __future__ import annotations

import os
import signal

import msgspec
import pytest

from contracts.status import MachineStatus as S
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from providers.local.processes import machine_processes, machine_roots
from tests.stop_checks import ready_machine
from tests.waiters import wait_until

#: Short, so that a machine whose sandbox is gone fails soon; a slow daemon that runs is
#: given more windows (FLEET_BOOT_ALIVE_MAX_S, its default here), so no start fails by it.
BOOT_TIMEOUT_S = 4.0
KEPT = "kept across the failure"


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, boot_timeout_s=BOOT_TIMEOUT_S)


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            continue


async def killed_while_booting(stack: FleetClient, settings: Settings, mid: str) -> None:
    """Stop the ready machine, start it, and SIGKILL its sandbox once its provider has started
    it (its new external id recorded: a sandbox killed before that, the provisioner's start
    is retried) and before its daemon reported ready (held with SIGSTOP while its status is
    read). A start whose daemon was quicker than the catch is stopped again, and another
    tried."""
    machine_dir = settings.data_path / "machines" / mid
    for _ in range(5):
        was = (await stack.get_machine(mid)).external_id
        await stack.stop_machine(mid)
        stopped = await stack.wait_for(mid, ["stopped"], timeout_s=120)
        assert stopped.status is S.STOPPED, stopped.status_reason
        await stack.start_machine(mid)

        async def started(was: str | None = was) -> bool:
            return (await stack.get_machine(mid)).external_id not in (was, None)

        await wait_until(started, timeout=120, every=0.01)
        pids = machine_processes(machine_dir, mid)
        signal_all(pids, signal.SIGSTOP)
        if (await stack.get_machine(mid)).status is S.BOOTING:
            signal_all(pids, signal.SIGKILL)
            await wait_until(lambda: not machine_roots(machine_dir, mid), timeout=30)
            return
        signal_all(pids, signal.SIGCONT)
        await stack.wait_for(mid, ["ready"], timeout_s=120)
    pytest.fail("the machine was never caught before its daemon reported ready, in 5 tries")


@pytest.mark.timeout(420)  # three pipelines (create, two starts) on a busy host
async def test_a_machine_failed_at_its_boot_is_started_again_with_its_home(
    stack: FleetClient, stack_settings: Settings
) -> None:
    mid = await ready_machine(stack, "failed-boot")
    wrote = await stack.exec(mid, ["sh", "-c", f'echo "{KEPT}" > "$HOME/kept.txt"'])
    assert wrote.exit_code == 0, wrote.stderr
    await killed_while_booting(stack, stack_settings, mid)

    failed = await stack.wait_for(mid, ["failed", "ready"], timeout_s=120)
    assert failed.status is S.FAILED, failed.status_reason
    assert "did not report ready" in failed.status_reason
    assert "its daemon is not running on its host" in failed.status_reason

    started = await stack.start_machine(mid)  # was: 1009 only a stopped machine can be started
    assert started.status is S.BOOTING, started.status_reason
    ready = await stack.wait_for(mid, ["ready", "failed"], timeout_s=180)
    assert ready.status is S.READY, ready.status_reason
    assert ready.id == mid  # the same machine, started anew
    assert ready.external_id != failed.external_id
    home = await stack.exec(mid, ["sh", "-c", 'cat "$HOME/kept.txt"'])
    assert (home.exit_code, home.stdout.strip()) == (0, KEPT)


@pytest.mark.timeout(300)
async def test_a_failed_machine_whose_daemon_runs_has_it_ended_before_its_start(
    stack: FleetClient, stack_settings: Settings, store: Store
) -> None:
    """A machine failed while its sandbox still runs (a daemon that reported too late, a
    setup step that failed): its start ends that sandbox, then starts the machine afresh."""
    mid = await ready_machine(stack, "failed-alive")
    machine_dir = stack_settings.data_path / "machines" / mid
    before = machine_roots(machine_dir, mid)
    assert before
    failing = await store.transition(mid, S.FAILED, "setup failed: injected by the test")
    assert failing.moved
    assert machine_roots(machine_dir, mid) == before  # a failure ends nothing by itself

    await stack.start_machine(mid)
    ready = await stack.wait_for(mid, ["ready", "failed"], timeout_s=180)
    assert ready.status is S.READY, ready.status_reason
    now = machine_roots(machine_dir, mid)
    assert now
    assert not set(before) & set(now)  # the old sandbox ended, a new one started
    done = await stack.exec(mid, ["true"])
    assert done.exit_code == 0
