"""providers/sandbox/cgroup.py on a directory tree shaped like /sys/fs/cgroup (the real one is in
tests/integration/test_limits.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from controlplane.policy import Limits
from providers.sandbox import MachineCgroup, NotFrozen, cgroup, frozen


def v1_tree(root: Path) -> Path:
    for controller in cgroup.V1_CONTROLLERS:
        (root / controller).mkdir(parents=True)
    return root


def test_no_hierarchy_is_named_as_the_reason(tmp_path: Path) -> None:
    why = cgroup.unavailable(tmp_path)
    assert why is not None
    assert "memory, cpu and pids" in why


def test_v1_limits_are_written_in_each_controller(tmp_path: Path) -> None:
    root = v1_tree(tmp_path)
    assert cgroup.unavailable(root) is None
    group = MachineCgroup("m-1", root)
    group.create(Limits(memory_mb=300, cpus=1.5, pids=99))
    assert (root / "memory/fleet/m-1/memory.limit_in_bytes").read_text() == str(300 << 20)
    assert (root / "cpu/fleet/m-1/cpu.cfs_quota_us").read_text() == "150000"
    assert (root / "pids/fleet/m-1/pids.max").read_text() == "99"


def test_the_command_starts_inside_every_group(tmp_path: Path) -> None:
    group = MachineCgroup("m-2", v1_tree(tmp_path))
    group.create(Limits())
    argv = group.enter_argv(["sh", "-c", "echo $$"])
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    # The pid written to each cgroup.procs is the command's own (the shell exec'd it).
    assert [Path(f).read_text().strip() for f in group.procs_files()] == [out] * 3


def test_a_group_it_cannot_enter_stops_the_command(tmp_path: Path) -> None:
    group = MachineCgroup("m-3", v1_tree(tmp_path))  # never created: no directory to write to
    argv = group.enter_argv(["echo", "started"])
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 125
    assert "started" not in done.stdout


def test_a_running_machine_with_no_group_to_freeze_is_refused(tmp_path: Path) -> None:
    """A copy that must see the machine stand still is never made while it may run on."""
    root = v1_tree(tmp_path)
    groups = [MachineCgroup("m-4", root), MachineCgroup("p-slot", root)]
    ran = []
    with pytest.raises(NotFrozen, match="m-4, p-slot"), frozen(groups, running=True):
        ran.append("copied")
    assert ran == []
    with frozen(groups, running=False):  # stopped: nothing of it can change anything
        ran.append("copied")
    assert ran == ["copied"]
