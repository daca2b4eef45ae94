"""`stop_all_local` (what `fleet up` and every test stack call at their end) stops its gvisor
machines together: each waits on its own sandbox for up to the grace time, so one after another
n machines took the sum of their stops (2 s each when idle, the grace time each when stuck).
The stops themselves, on real runsc sandboxes: tests/integration/test_gvisor*.py."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from providers.gvisor import BUNDLE, runsc as gvisor
from providers.local import supervision as local


def test_every_gvisor_machine_is_stopped_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machines = tmp_path / "machines"
    ids = [f"m-{i:016x}" for i in range(4)]
    for mid in ids:
        (machines / mid / BUNDLE).mkdir(parents=True)
    # Each stop returns only once every stop has begun: one after another, the first never does.
    together = threading.Barrier(len(ids), timeout=10)
    stopped: list[str] = []

    def stop_machine(runsc: gvisor.Runsc, machine_dir: Path, machine_id: str,
                     grace_s: float, owners: tuple[str, ...] = ()) -> bool:  # fmt: skip
        assert machine_dir.name == machine_id
        assert machine_id in owners  # its own name, and a pool slot's where it came from one
        together.wait()
        stopped.append(machine_id)
        return True

    monkeypatch.setattr(gvisor, "stop_machine", stop_machine)
    assert local.stop_all_local(tmp_path, grace_s=1.0) == len(ids)
    assert sorted(stopped) == ids
