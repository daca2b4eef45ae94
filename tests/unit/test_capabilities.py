"""A provider's capabilities (``providers.base``): asked for by protocol, answered by the part
that has it; the local provider's front passes no call on."""

from __future__ import annotations

from pathlib import Path

import pytest

from providers.base import (
    Capabilities,
    DaemonWatch,
    DiskMeter,
    HomeCloner,
    MachineControl,
    Pauser,
    RootExecutor,
    SnapshotTaker,
    UsageMeter,
    capability,
)
from providers.local import LocalProvider
from providers.local.gvisor_machines import GvisorMachines
from providers.local.home_copies import HomeCopies
from providers.local.running import LocalRunning


class OwnMethods:
    """A provider whose one capability is its own method (as docker's and the fakes' are)."""

    async def daemon_runs(self, machine_id: str) -> bool:
        return True


def test_each_capability_of_the_local_provider_is_the_part_that_has_it(tmp_path: Path) -> None:
    local = LocalProvider(data_dir=tmp_path, nats_url="nats://127.0.0.1:4222", environ={})
    expected = {HomeCloner: HomeCopies, SnapshotTaker: HomeCopies, DiskMeter: HomeCopies,
                Pauser: GvisorMachines, RootExecutor: GvisorMachines,
                MachineControl: LocalRunning, DaemonWatch: LocalRunning,
                UsageMeter: LocalRunning}  # fmt: skip
    for kind, part in expected.items():
        assert type(capability(local, kind)) is part, kind
    assert capability(local, Pauser) is local.parts.gvisor
    # Its front: start, stop and remove a machine, and where it lives; nothing passed on.
    public = {n for n in dir(local) if not n.startswith("_")}
    assert public == {"name", "parts", "capabilities", "start", "stop", "remove", "runs_images",
                      "data_dir", "machine_dir", "home"}  # fmt: skip


def test_a_provider_without_a_registry_is_its_own_part_or_has_none() -> None:
    own = OwnMethods()
    assert capability(own, DaemonWatch) is own
    assert capability(own, Pauser) is None
    assert capability(None, DaemonWatch) is None  # no provider of that name on this host


def test_a_registry_refuses_a_part_without_the_capabilitys_methods() -> None:
    with pytest.raises(TypeError, match="OwnMethods has not Pauser's methods"):
        Capabilities({Pauser: OwnMethods()})
    assert Capabilities({DaemonWatch: OwnMethods()}).of(Pauser) is None
