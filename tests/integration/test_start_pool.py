"""Instant start (``local``), real sandboxed daemons, NATS and valkey: with a warm pool, the
start of a stopped machine and a fork's first start adopt a pooled sandbox, which is given the
machine's home at the machine's own path. Each life keeps every file of the lives before it,
its background processes come back, and the machine is the same one as after a cold start:
its `$HOME`, its hostname, its uid owning its files, one daemon log across lives. Nothing of
it is mounted on the host. (Without a pool a start is cold: test_stop_start.py.)"""

from __future__ import annotations

import contextlib
from pathlib import Path

import msgspec
import pytest

from bench.outside import PORT, Outside
from contracts.errors import DaemonUnavailable
from contracts.status import MachineStatus
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.fork_checks import ready_forks
from tests.integration.test_egress import REFUSED, outside
from tests.integration.test_network_isolation import connect_from
from tests.integration.test_pipeline import home_of
from tests.integration.test_warm_pool import pooled, slot_of, up_slots
from tests.stop_checks import host_pids_running, ready_machine, unique_sleep
from tests.waiters import wait_until

__all__ = ["outside"]  # a fixture, re-exported for pytest


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, warm_pool="local=1", warm_pool_min_available_mb=0)


async def fresh_slot(settings: Settings, used: set[str]) -> str:
    """Wait for a pooled machine no machine has had yet; its slot."""
    await wait_until(lambda: bool(up_slots(settings) - used), timeout=60)
    return sorted(up_slots(settings) - used)[0]


async def stop(stack: FleetClient, mid: str) -> None:
    await stack.stop_machine(mid)
    assert (await stack.wait_for(mid, ("stopped",), timeout_s=60)).status is MachineStatus.STOPPED


async def start(stack: FleetClient, mid: str) -> None:
    await stack.start_machine(mid)
    ready = await stack.wait_for(mid, ("ready", "failed"), timeout_s=120)
    assert ready.status is MachineStatus.READY, ready.status_reason


async def is_its_own_machine(stack: FleetClient, settings: Settings, mid: str) -> None:
    """What a cold start gives it: `$HOME` at its own path, its hostname, its uid (the one
    recorded for it) running its daemon and owning its files; and no mount on the host."""
    home = home_of(settings, mid)
    probe = "import os, socket; print(os.environ['HOME'], os.getcwd(), socket.gethostname())"
    got = (await stack.exec(mid, ["python3", "-c", probe])).stdout.split()
    assert got == [str(home), str(home), f"fleet-{mid[-12:]}"]
    uid = int((settings.data_path / "machines" / mid / "uid").read_text())
    assert (await stack.exec(mid, ["id", "-u"])).stdout.strip() == str(uid)
    assert {p.stat().st_uid for p in [home, *home.rglob("*")]} == {uid}
    assert str(home) not in Path("/proc/self/mountinfo").read_text()


async def test_stop_start_chain_adopts_pooled_sandboxes_and_keeps_every_file(
    stack: FleetClient, settings: Settings
) -> None:
    used = {await pooled(settings)}
    mid = await ready_machine(stack, "adopter")
    used.add(slot_of(settings, mid) or "")
    inst = (await stack.get_machine(mid)).instance_id
    kept = unique_sleep()
    await stack.start_process(mid, kept, tag="kept")
    written = {"life-1.txt": "first life\n"}
    await stack.write_file(mid, "~/notes/life-1.txt", written["life-1.txt"])
    for life in (2, 3):
        await stop(stack, mid)
        assert not host_pids_running(kept)
        await stack.set_env("LIFE", str(life), instance_id=inst)
        slot = await fresh_slot(settings, used)
        await start(stack, mid)
        assert slot_of(settings, mid) == slot  # the pooled sandbox, not a cold start
        used.add(slot)
        assert slot not in up_slots(settings)  # used once
        for name, text in written.items():  # every earlier life's file, on both sides
            assert (home_of(settings, mid) / "notes" / name).read_text() == text
            assert (await stack.exec(mid, ["cat", f"notes/{name}"])).stdout == text
        env = (home_of(settings, mid) / ".fleet" / ".env").read_text()
        assert f"LIFE='{life}'" in env  # set up afresh
        procs = {p.tag: p for p in await stack.list_processes(mid)}
        assert procs["kept"].state == "running"
        assert host_pids_running(kept)  # came back in the adopted sandbox
        await is_its_own_machine(stack, settings, mid)
        written[f"life-{life}.txt"] = f"life {life}\n"
        await stack.write_file(mid, f"~/notes/life-{life}.txt", written[f"life-{life}.txt"])
    # One daemon log across the lives, as the machine reads it back: each life's supervisor
    # started a daemon.
    lines = await stack.daemon_log(mid, 1000)
    started = sum("supervisor: daemon_started" in line for line in lines)
    assert started >= 3
    # A daemon the adopted sandbox's supervisor starts again has the machine's home too.
    log = settings.data_path / "machines" / mid / "daemon.log"
    await stack.restart_machine(mid)
    await wait_until(lambda: log.read_text().count("supervisor: daemon_started") > started,
                     timeout=60)  # fmt: skip

    async def answers() -> bool:
        with contextlib.suppress(DaemonUnavailable):
            return (await stack.exec(mid, ["true"], timeout_s=20)).exit_code == 0
        return False

    await wait_until(answers, timeout=60, every=0.3)
    await is_its_own_machine(stack, settings, mid)
    assert host_pids_running(kept)  # a restart leaves its processes running


async def test_a_forks_first_start_adopts_a_pooled_sandbox_with_the_copied_home(
    stack: FleetClient, settings: Settings
) -> None:
    used = {await pooled(settings)}
    source = await ready_machine(stack, "fork-source")
    used.add(slot_of(settings, source) or "")
    await stack.write_file(source, "~/state.txt", "before the fork\n")
    slot = await fresh_slot(settings, used)
    [fork] = await ready_forks(stack, source, 1)
    assert slot_of(settings, fork) == slot
    assert (await stack.exec(fork, ["cat", "state.txt"])).stdout == "before the fork\n"
    await is_its_own_machine(stack, settings, fork)
    source_uid = (settings.data_path / "machines" / source / "uid").read_text()
    assert (settings.data_path / "machines" / fork / "uid").read_text() != source_uid
    await stack.write_file(fork, "~/state.txt", "the fork's\n")  # its own home
    assert (await stack.exec(source, ["cat", "state.txt"])).stdout == "before the fork\n"


async def test_an_adopting_start_has_its_instances_egress_policy(
    stack: FleetClient, settings: Settings, outside: Outside
) -> None:
    """The policy is written into the adopted sandbox's network namespace before its identity
    goes out, as at a cold start: an address the policy does not allow is refused."""
    a, b = (outside.address, PORT), (outside.address2, PORT)
    used = {await pooled(settings)}
    mid = await ready_machine(stack, "egress-start")
    used.add(slot_of(settings, mid) or "")
    inst = (await stack.get_machine(mid)).instance_id
    await stack.set_network_policy(inst, default="deny", allow=[f"{a[0]}:8000-8090"])
    await stop(stack, mid)
    slot = await fresh_slot(settings, used)
    await start(stack, mid)
    assert slot_of(settings, mid) == slot
    seen = await connect_from(stack, mid, [a, b])
    assert list(seen.values()) == ["connected", REFUSED], seen
