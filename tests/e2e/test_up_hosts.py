"""`fleet up --hosts 3` (docs/hosts.md): three hosts on this machine, capacity 4 each. Twelve
creates land four on each host; the thirteenth fails "no host with capacity" within the
placement timeout; `fleet hosts list` shows them."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from pathlib import Path

import pytest

from contracts.status import MachineStatus
from fleet.client import FleetClient
from fleet.embedded import free_port
from tests.e2e.conftest import start_fleet_up

HOSTS = ("host-1", "host-2", "host-3")
CAPACITY = 4
PLACEMENT_TIMEOUT_S = 3.0


@pytest.mark.timeout(240)
async def test_fleet_up_hosts_places_by_capacity(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "FLEET_LOG_LEVEL": "warning", "FLEET_WARM_POOL": "",
           "FLEET_HOST_CAPACITY": str(CAPACITY),
           "FLEET_PLACEMENT_TIMEOUT_S": str(PLACEMENT_TIMEOUT_S)}  # fmt: skip
    up = start_fleet_up(tmp_path / "data", free_port(), "--hosts", "3", env=env)
    try:
        assert "hosts        host-1 host-2 host-3" in up.banner
        async with FleetClient(up.url, up.token, timeout_s=60) as fleet:
            n = len(HOSTS) * CAPACITY
            insts = await asyncio.gather(*(fleet.create_instance(f"h{i}") for i in range(n + 1)))
            made = await asyncio.gather(*(fleet.create_machine(i.id, "swarm") for i in insts[:n]))
            done = await asyncio.gather(
                *(fleet.wait_for(m.id, {"ready", "failed"}, timeout_s=90) for m in made)
            )
            assert [m.status_reason for m in done if m.status is not MachineStatus.READY] == []
            assert Counter(m.host_id for m in done) == {h: CAPACITY for h in HOSTS}
            # Each host's machines run under its own data dir.
            for m in done:
                assert (
                    up.data_dir / "hosts" / str(m.host_id) / "swarm" / "machines" / m.id
                ).is_dir()

            start = time.monotonic()
            extra = await fleet.create_machine(insts[n].id, "swarm")
            failed = await fleet.wait_for(extra.id, {"ready", "failed"}, timeout_s=30)
            assert failed.status is MachineStatus.FAILED
            assert "no host with capacity" in failed.status_reason
            assert time.monotonic() - start < PLACEMENT_TIMEOUT_S + 5

        listed = up.cli("hosts", "list")
        assert listed.returncode == 0, listed.stderr
        rows = [line.split()[:5] for line in listed.stdout.splitlines()[1:]]
        assert rows == [[h, "active", str(CAPACITY), str(CAPACITY), "0"] for h in HOSTS]
    finally:
        up.stop()
