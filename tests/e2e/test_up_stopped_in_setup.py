"""`fleet up` stopped (Ctrl-C) while a machine boots, and started again after longer than the
boot deadline (``FLEET_BOOT_TIMEOUT_S``, short here): the time the stack was down is not the
machine's. The new stack starts the machine's daemon again and sets it up: it is `ready` and
serves, never `failed` by the deadline the stopped stack had started counting.

The machine is held in `booting` (its sandbox's processes stopped with SIGSTOP as soon as it is
booting, before its daemon could report ready) until the stack's stage services have stopped;
then its processes go on, so its daemon may report ready to a stack that no longer listens (a
report the next stack meets, from a daemon that is gone), and the stack's stop ends it.
The rules, on a manual clock: tests/fast/test_boot_deadline.py."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from base.lifeline import recorded
from contracts.status import MachineStatus as S
from fleet.client import FleetClient
from fleet.up.stack import CHILDREN_NAME
from providers.local import UP_MARKER
from providers.local.processes import machine_processes
from providers.local.supervision import STOP_GRACE_S
from tests.e2e.conftest import FleetUp, ok, start_fleet_up
from tests.e2e.test_up_killed import ups
from tests.waiters import still_running_after, wait_until

__all__ = ["ups"]

#: Short, so that the stack is down for longer than it: the next stack would meet a machine
#: whose deadline (counted from its start) is long past.
BOOT_TIMEOUT_S = 6.0
ENV = {"FLEET_BOOT_TIMEOUT_S": f"{BOOT_TIMEOUT_S:g}"}


def signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            continue


async def held_booting(up: FleetUp, client: FleetClient) -> tuple[str, list[int]]:
    """A machine caught in `booting`, its sandbox's processes stopped (SIGSTOP) before its
    daemon reported ready; its id and those processes. A machine whose daemon was quicker
    than the catch is left, and another made (in an instance of its own)."""
    for n in range(5):
        iid = (await client.create_instance(f"stopped-in-setup-{n}")).id
        mid = (await client.create_machine(iid)).id
        machine_dir = up.data_dir.resolve() / "machines" / mid

        async def booting(mid: str = mid) -> bool:
            return (await client.get_machine(mid)).status not in (S.CREATED, S.PROVISIONING)

        await wait_until(booting, timeout=120, every=0.01)
        pids = machine_processes(machine_dir, mid)
        signal_all(pids, signal.SIGSTOP)
        if (await client.get_machine(mid)).status is S.BOOTING and pids:
            return mid, pids
        signal_all(pids, signal.SIGCONT)
    pytest.fail("no machine was caught booting in 5 tries")


def stop_holding(up: FleetUp, held: list[int]) -> None:
    """Ctrl-C the stack; once its setup pusher and prober have stopped, let the held machine's
    processes go on (they meet the stack's stop of the machines), and wait for the stack's end."""
    stages = [pid for pid, _, label in recorded(up.data_dir.resolve() / CHILDREN_NAME)
              if label in ("setup_pusher", "prober")]  # fmt: skip
    assert len(stages) == 2, stages
    up.proc.send_signal(signal.SIGINT)
    assert still_running_after(stages, 120) == [], "the stage services did not stop"
    signal_all(held, signal.SIGCONT)
    assert up.stop(timeout=STOP_GRACE_S + 120) == 0


@pytest.mark.timeout(600)
async def test_a_machine_the_stack_stopped_while_it_booted_is_set_up_again(
    tmp_path: Path, ups: list[FleetUp]
) -> None:
    data = tmp_path / "data"
    up = start_fleet_up(data, env=ENV)
    ups.append(up)
    async with FleetClient(up.url, up.token) as client:
        mid, held = await held_booting(up, client)
        booting_since = time.time()
    stop_holding(up, held)
    # The stack stays down for longer than the deadline (what a user's coffee break does):
    # waited for on the clock, since that is the condition the scenario needs.
    await wait_until(lambda: time.time() > booting_since + BOOT_TIMEOUT_S + 1, timeout=60)

    again = start_fleet_up(data, env=ENV, timeout=STOP_GRACE_S + 60)
    ups.append(again)
    async with FleetClient(again.url, again.token) as client:
        machine = await client.wait_for(mid, ["ready", "failed"], timeout_s=240)
        assert machine.status is S.READY, machine.status_reason
        done = await client.exec(mid, ["true"], timeout_s=60)
        assert done.exit_code == 0


@pytest.mark.timeout(600)
async def test_a_pooled_machines_env_names_its_own_home_after_the_stack_restarts(
    tmp_path: Path, ups: list[FleetUp]
) -> None:
    """A machine taken from the warm pool ran in its slot's home; started again by the next
    stack, it runs in its own (``machines/<id>/home``): the .env its new daemon gets names the
    CA bundle where it is now, so what reads the CA variables (curl: exit 77 otherwise) finds
    it."""
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n")
    env = {"FLEET_WARM_POOL": "local=1", "FLEET_CA_BUNDLE": str(ca)}
    data = tmp_path / "data"
    up = start_fleet_up(data, env=env)
    ups.append(up)
    iid = json.loads(ok(up.cli("--json", "instances", "create", "pooled")))["id"]
    pool = data.resolve() / "pool" / "local"
    await wait_until(lambda: any(pool.glob(f"*/*/{UP_MARKER}")), timeout=120)
    async with FleetClient(up.url, up.token) as client:
        mid = (await client.create_machine(iid)).id
        got = await client.wait_for(mid, ["ready", "failed"], timeout_s=180)
        assert got.status is S.READY, got.status_reason
        before = (await client.exec(mid, ["sh", "-c", 'echo "$SSL_CERT_FILE"'])).stdout.strip()
    assert "/pool/" in before  # its slot's home: what the restart moves it from
    assert up.stop() == 0
    again = start_fleet_up(data, env=env, timeout=STOP_GRACE_S + 60)
    ups.append(again)
    async with FleetClient(again.url, again.token) as client:
        got = await client.wait_for(mid, ["ready", "failed"], timeout_s=240)
        assert got.status is S.READY, got.status_reason

        async def names_its_ca() -> bool:
            done = await client.exec(
                mid, ["sh", "-c", 'test -f "$SSL_CERT_FILE" && echo "$SSL_CERT_FILE"']
            )
            return done.exit_code == 0 and f"/machines/{mid}/home/" in done.stdout

        await wait_until(names_its_ca, timeout=60, every=0.5)
