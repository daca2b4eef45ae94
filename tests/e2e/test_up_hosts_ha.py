"""`fleet up --hosts 3 --ha` as one layout (docs/hosts.md, docs/ha.md): three hosts of two
provisioners each on the 3-node NATS cluster and valkey with sentinels. With `fleet up` frozen
(so that it restarts nothing), one NATS node is SIGKILLed and then host-3 (both its
provisioners and its machines): another host's machine, once its daemon is on a live node,
answers all along, host-3 is lost, its
machines are rebuilt on the live hosts by FLEET_HOST_LOST_REBUILD_S, and once `fleet up` runs
again (the node and host-3 restarted) host-3 runs none of the machines rebuilt elsewhere."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from contracts.errors import DaemonTimeout, DaemonUnavailable
from contracts.status import MachineStatus
from fleet.client import FleetClient
from tests.e2e.conftest import FleetUp, start_fleet_up
from tests.e2e.test_chaos_ha import _pid_of, _story
from tests.e2e.test_up_hosts import host_pids, keep_answering, swarm_machines
from tests.waiters import wait_until

# The chaos tier: `./run test` runs it after the rest (docs/development.md).
pytestmark = pytest.mark.chaos

LOST_AFTER_S = 3.0
REBUILD_S = 2.0


@pytest.mark.timeout(300)
async def test_a_host_killed_while_a_nats_node_is_down(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "FLEET_LOG_LEVEL": "warning", "FLEET_WARM_POOL": "",
           "FLEET_HOST_CAPACITY": "2", "FLEET_HOST_HEARTBEAT_S": "0.5",
           "FLEET_HOST_LOST_AFTER_S": str(LOST_AFTER_S), "FLEET_HEARTBEAT_S": "0.5",
           "FLEET_HOST_LOST_REBUILD_S": str(REBUILD_S)}  # fmt: skip
    up = start_fleet_up(tmp_path / "data", "--hosts", "3", "--ha", env=env)
    try:
        assert "hosts        host-1 host-2 host-3" in up.banner
        assert "(--ha)" in up.banner
        async with FleetClient(up.url, up.token, timeout_s=60) as fleet:
            for host in ("host-1", "host-2"):  # the first two land on host-3
                await fleet.drain_host(host)
            on3 = await _ready(fleet, 2, "on3-")
            for host in ("host-1", "host-2"):
                await fleet.drain_host(host, draining=False)
            live = await _ready(fleet, 1, "live-")
            assert {(await fleet.get_machine(m)).host_id for m in on3} == {"host-3"}
            node = _pid_of(up, "/nats-0/nats.conf")
            instances = [(await fleet.get_machine(m)).instance_id for m in on3]

            stop = asyncio.Event()
            answering: asyncio.Task[int] | None = None
            victims = await _frozen_with_whole_host(up, "host-3")  # restarts nothing till SIGCONT
            try:
                os.kill(node, signal.SIGKILL)
                # A daemon that was connected to that node answers again once it reconnected
                # to another (1502, or a request lost with the node, meanwhile); then the host is
                # killed, while the node is still down.
                await wait_until(lambda: _answers(fleet, live), timeout=60, every=0.2)
                answering = asyncio.create_task(keep_answering(fleet, live, stop))
                for pid in victims:
                    os.kill(pid, signal.SIGKILL)
                rebuilt = [
                    await _rebuilt(fleet, up, inst, old)
                    for inst, old in zip(instances, on3, strict=True)
                ]
                stop.set()
                assert answering is not None
                assert await answering > len(live)  # and not one wrong answer meanwhile
            finally:
                os.kill(up.proc.pid, signal.SIGCONT)
                if answering is not None and not answering.done():
                    answering.cancel()
                    await asyncio.gather(answering, return_exceptions=True)
            assert {(await fleet.get_machine(m)).host_id for m in rebuilt} <= {"host-1", "host-2"}

            async def host_3_back() -> bool:
                hosts = {h.host_id: h.state.value for h in await fleet.list_hosts()}
                return hosts["host-3"] == "active"

            await wait_until(host_3_back, timeout=60, every=0.5)
            assert _pid_of(up, "/nats-0/nats.conf") != node  # `fleet up` restarted it
            for old in on3:  # archived once host-3, which has its files, removed them
                await fleet.wait_for(old, [MachineStatus.ARCHIVED], 60)
            assert await swarm_machines(up, "host-3") == set()  # none run again there
    finally:
        up.stop(timeout=120)


async def _frozen_with_whole_host(up: FleetUp, host_id: str) -> list[int]:
    """Freeze `fleet up` at a moment host ``host_id`` runs whole: its two provisioners and its
    swarm process (a provisioner `fleet up` is restarting would be missed by the kill, then
    started again by `fleet up` before the host could be lost). Their pids."""
    victims: list[int] = []

    async def whole() -> bool:
        os.kill(up.proc.pid, signal.SIGSTOP)
        victims[:] = host_pids(up, host_id)
        if len(victims) >= 3:
            return True
        os.kill(up.proc.pid, signal.SIGCONT)
        return False

    try:
        await wait_until(whole, timeout=30, every=0.2)
    except TimeoutError:
        logs = sorted((up.data_dir / "logs").glob(f"provisioner-{host_id}*.log"))
        tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs)
        raise AssertionError(f"{host_id} not whole: {victims}\n{tails}") from None
    return victims


async def _answers(fleet: FleetClient, machines: list[str]) -> bool:
    for mid in machines:
        try:
            await fleet.exec(mid, ["true"], timeout_s=2)
        except (DaemonUnavailable, DaemonTimeout):  # not yet on a live node; a request lost
            return False
    return True


async def _ready(fleet: FleetClient, n: int, name: str) -> list[str]:
    insts = await asyncio.gather(*(fleet.create_instance(f"{name}{i}") for i in range(n)))
    made = await asyncio.gather(*(fleet.create_machine(i.id, "swarm") for i in insts))
    done = await asyncio.gather(*(fleet.wait_for(m.id, {"ready"}, 120) for m in made))
    return [m.id for m in done]


async def _rebuilt(fleet: FleetClient, up: FleetUp, instance_id: str, old: str) -> str:
    """The instance's machine that replaced ``old`` (lost with its host), once ready: within
    the lost-after time, the rebuild time and 10 s more, from the kill."""
    found: list[str] = []

    async def made() -> bool:
        found[:] = [m.id for m in await fleet.list_machines(instance_id) if m.id != old]
        return bool(found)

    await wait_until(made, timeout=LOST_AFTER_S + REBUILD_S + 10, every=0.2)
    try:
        done = await fleet.wait_for(found[0], {"ready", "failed"}, 60)
    except TimeoutError:
        late = await fleet.get_machine(found[0])
        raise AssertionError(f"not ready in 60 s:\n{await _story(fleet, up, [late])}") from None
    assert done.status is MachineStatus.READY, done.status_reason
    return done.id
