"""Several writeFile calls in one signed JSON-RPC batch to a real daemon (the setup push's
.env and cron table)."""

from __future__ import annotations

import stat

import pytest

from contracts.daemon.rpc import WRITE_FILE, WriteFileParams
from contracts.errors import InvalidParams
from controlplane.bus import Bus
from controlplane.calls.daemon_client import DaemonClient
from controlplane.process.metrics import Metrics
from tests.conftest import SpawnDaemon
from tests.integration.test_daemon import KEY, boot


async def test_a_batch_writes_every_file_in_order(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    d, mc = await boot(bus, spawn_daemon)
    results = await mc.write_files([
        WriteFileParams(path="~/.fleet/.env", content="A='1'\n", mode=0o600),
        WriteFileParams(path="~/.fleet/cron.json", content="[]\n", mode=0o600),
        WriteFileParams(path="notes.txt", content="third"),
    ])  # fmt: skip
    assert [r.path for r in results] == [
        str(d.home / ".fleet" / ".env"),
        str(d.home / ".fleet" / "cron.json"),
        str(d.home / "notes.txt"),
    ]
    assert [r.bytes_written for r in results] == [6, 3, 5]
    assert (d.home / ".fleet" / ".env").read_text() == "A='1'\n"
    assert stat.S_IMODE((d.home / ".fleet" / ".env").stat().st_mode) == 0o600
    assert (d.home / "notes.txt").read_text() == "third"


async def test_a_refused_call_in_a_batch_raises_its_own_error(
    bus: Bus, spawn_daemon: SpawnDaemon
) -> None:
    d, mc = await boot(bus, spawn_daemon)
    with pytest.raises(InvalidParams) as err:
        await mc.write_files([
            WriteFileParams(path="kept.txt", content="ok"),
            WriteFileParams(path="../../escape.txt", content="no"),
        ])  # fmt: skip
    assert "escape.txt' is not a file in the machine's home" in err.value.message
    assert (d.home / "kept.txt").read_text() == "ok"  # the call before it was answered
    assert not (d.home.parent.parent / "escape.txt").exists()


async def test_each_call_of_a_batch_is_counted(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    metrics = Metrics()
    _, mc = await boot(bus, spawn_daemon)
    client = DaemonClient(bus.nc, keys=KEY, metrics=metrics)
    await client.machine(mc.machine_id).write_files(
        [WriteFileParams(path=f"f{i}", content="x") for i in range(3)]
    )
    count = metrics.registry.get_sample_value(
        "fleet_daemon_rpc_seconds_count", {"method": WRITE_FILE.name, "outcome": "ok"}
    )
    assert count == 3
