"""The host's available memory (providers/host_memory.py): MemAvailable, a memory cgroup's room
on cgroup v1 and v2 (its inactive file cache counted as free), the lower of the two, and a group
without a limit or unreadable left out. A real cgroup with a real hog:
tests/integration/test_gvisor_memory_pressure.py."""

from __future__ import annotations

from pathlib import Path

from providers.host_memory import available_mb, cgroup_room_mb, host_memory, mem_available_mb

MIB = 1024 * 1024


def meminfo(tmp_path: Path, mb: int) -> Path:
    path = tmp_path / "meminfo"
    path.write_text(f"MemTotal:       24000000 kB\nMemAvailable:   {mb * 1024} kB\n")
    return path


def v1_group(tmp_path: Path, limit: int, usage: int, inactive: int) -> Path:
    group = tmp_path / "v1"
    group.mkdir()
    (group / "memory.limit_in_bytes").write_text(f"{limit}\n")
    (group / "memory.usage_in_bytes").write_text(f"{usage}\n")
    # Its own inactive_file and its subtree's total_inactive_file: the subtree's counts.
    (group / "memory.stat").write_text(f"cache 1\ninactive_file 7\ntotal_inactive_file "
                                       f"{inactive}\ntotal_rss 5\n")  # fmt: skip
    return group


def v2_group(tmp_path: Path, limit: str, current: int, inactive: int) -> Path:
    group = tmp_path / "v2"
    group.mkdir()
    (group / "memory.max").write_text(f"{limit}\n")
    (group / "memory.current").write_text(f"{current}\n")
    (group / "memory.stat").write_text(f"anon 5\nfile 9\ninactive_file {inactive}\n")
    return group


def test_meminfo_alone(tmp_path: Path) -> None:
    assert mem_available_mb(meminfo(tmp_path, 1000)) == 1000.0
    assert available_mb(None, meminfo(tmp_path, 1000)) == 1000.0
    assert available_mb(None, tmp_path / "absent") is None


def test_a_v1_groups_room_counts_its_inactive_file_cache_as_free(tmp_path: Path) -> None:
    group = v1_group(tmp_path, limit=512 * MIB, usage=400 * MIB, inactive=16 * MIB)
    assert cgroup_room_mb(group) == 128.0
    # The lower of the two: the group's here, the host's where the host has less.
    assert available_mb(group, meminfo(tmp_path, 1000)) == 128.0
    assert available_mb(group, meminfo(tmp_path, 100)) == 100.0


def test_a_v2_groups_room(tmp_path: Path) -> None:
    group = v2_group(tmp_path, limit=str(256 * MIB), current=250 * MIB, inactive=2 * MIB)
    assert cgroup_room_mb(group) == 8.0
    assert host_memory(str(group))() == min(8.0, mem_available_mb() or 8.0)


def test_a_group_without_a_limit_or_unreadable_is_left_out(tmp_path: Path) -> None:
    info = meminfo(tmp_path, 700)
    unlimited_v1 = v1_group(tmp_path, limit=9223372036854771712, usage=MIB, inactive=0)
    unlimited_v2 = v2_group(tmp_path, limit="max", current=MIB, inactive=0)
    for group in (unlimited_v1, unlimited_v2, tmp_path / "absent"):
        assert cgroup_room_mb(group) is None
        assert available_mb(group, info) == 700.0
    assert host_memory("")() == mem_available_mb()
