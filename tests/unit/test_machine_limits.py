"""What a machine's host cgroup gets for its limits (controlplane/policy/machine_limits.py)."""

from __future__ import annotations

from controlplane.policy import Limits, on_host
from controlplane.policy.machine_limits import GVISOR_TASKS_PER_PID


def test_a_gvisor_sandbox_gets_host_tasks_for_each_pid_and_the_rest_as_set() -> None:
    limits = Limits(memory_mb=2048, cpus=1.5, pids=512)
    assert on_host(limits, on_gvisor=True) == Limits(2048, 1.5, 512 * GVISOR_TASKS_PER_PID)
    assert on_host(limits, on_gvisor=False) == limits
