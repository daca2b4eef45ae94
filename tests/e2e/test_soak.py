"""The soak's short form (tests/soak.py, docs/stop-start.md#the-soak): gvisor machines of a
real `fleet up`, each with a dev server, a kernel and a writer of numbered lines, through
operations chosen with a fixed seed (pause, resumes by exec and by preview, forks and snapshots
with memory, machines made from them, stops and starts, the provisioner's and the gateway's
restarts) while clients exec and write; then every surviving machine's files and kernel
continuous, every operation answered, the disk figures as ``du`` has them, and nothing left.
By hand, longer: ``python -m tests.soak --minutes 30``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.soak import Plan, soak

# The chaos tier: `./run test` runs it after the rest (docs/development.md).
pytestmark = pytest.mark.chaos

#: The short form's seed: the same operations, in the same order, at every run.
SEED = 71


@pytest.mark.timeout(600)  # its fleet up and audit included: a place a killed provisioner
# held lapses within a minute (store/disk.py RESERVATION_S), and the audit waits for it; an
# operation that hangs is said, with its machine's events and log lines, after op_deadline_s
async def test_the_soak_loses_nothing(tmp_path: Path) -> None:
    # Up to 200 operations, for three minutes at most: a slower host runs fewer of the same.
    report = await soak(Plan(SEED, ops=200, minutes=3.0, op_deadline_s=150), tmp_path)
    print(report.text())
    assert not report.failures, report.text()
