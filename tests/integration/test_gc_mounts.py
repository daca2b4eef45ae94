"""`fleet gc` and mounts (fleet/up/gc.py): a mount point in a gone stack's data dir (an image
machine's overlay, say) is unmounted; one in a running stack's is kept."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from fleet.up import gc
from providers.scratch import mounts_under
from tests.fast.test_gc import dead_pid, hold


def mounted(data: Path) -> Path:
    point = data / "machines" / "m-1" / "rootfs"
    point.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "gc-test", str(point)], check=True, timeout=30)
    return point


def test_a_gone_stack_s_mount_is_unmounted_a_live_one_s_kept(tmp_path: Path) -> None:
    live, killed = tmp_path / "live", tmp_path / "killed"
    hold(live, os.getpid())
    hold(killed, dead_pid())
    points = [mounted(live), mounted(killed)]
    try:
        assert gc.find(only=live).mounts == []
        found = gc.find(only=killed)
        assert found.mounts == [points[1]]
        assert gc.remove(found) == []
        assert mounts_under(killed) == []
        assert mounts_under(live) == [points[0]]
    finally:
        for point in points:
            subprocess.run(["umount", "--lazy", str(point)], capture_output=True, timeout=30,
                           check=False)  # fmt: skip
