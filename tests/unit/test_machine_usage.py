"""A machine's counters as its host's kernel and engine give them (providers/machine_usage.py),
and samples merged into longer steps (controlplane/process/metrics_series.py)."""

from __future__ import annotations

from pathlib import Path

from contracts.models import MachineSample
from controlplane.process.metrics_series import aggregate, bucket_end
from providers.machine_usage import cgroup_usage, docker_usage, runsc_memory


def test_cgroup_v1_memory_leaves_out_the_page_cache_it_could_give_back(tmp_path: Path) -> None:
    memory, cpuacct = tmp_path / "memory", tmp_path / "cpuacct"
    memory.mkdir()
    cpuacct.mkdir()
    (memory / "memory.usage_in_bytes").write_text("300000000\n")
    (memory / "memory.limit_in_bytes").write_text("1073741824\n")
    (memory / "memory.stat").write_text("cache 5\ntotal_inactive_file 100000000\nrss 1\n")
    (cpuacct / "cpuacct.usage").write_text("12345678901\n")
    got = cgroup_usage([memory], cpuacct, v2=False)
    assert got is not None
    assert (got.cpu_ns, got.memory_bytes, got.memory_limit_bytes) == (12345678901, 200000000,
                                                                      1073741824)  # fmt: skip
    (memory / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "none"
    assert cgroup_usage([memory], cpuacct, v2=False).memory_limit_bytes is None  # type: ignore[union-attr]
    assert cgroup_usage([tmp_path / "gone"], cpuacct, v2=False) is None


def test_cgroup_v2(tmp_path: Path) -> None:
    (tmp_path / "cpu.stat").write_text("usage_usec 2500000\nuser_usec 1\n")
    (tmp_path / "memory.current").write_text("5000\n")
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "memory.stat").write_text("anon 1\ninactive_file 1000\n")
    got = cgroup_usage([tmp_path], tmp_path, v2=True)
    assert got is not None
    assert (got.cpu_ns, got.memory_bytes, got.memory_limit_bytes) == (2_500_000_000, 4000, None)


def test_docker_stats_and_runsc_stats() -> None:
    stats = {
        "cpu_stats": {"cpu_usage": {"total_usage": 7_000_000_000}},
        "memory_stats": {"usage": 250, "limit": 1000, "stats": {"inactive_file": 50}},
        "networks": {"eth0": {"rx_bytes": 10, "tx_bytes": 20}, "eth1": {"rx_bytes": 1,
                                                                      "tx_bytes": 2}},
    }  # fmt: skip
    got = docker_usage(stats)
    assert (got.cpu_ns, got.memory_bytes, got.memory_limit_bytes) == (7_000_000_000, 200, 1000)
    assert (got.net_in_bytes, got.net_out_bytes) == (11, 22)
    assert docker_usage({}).cpu_ns is None  # a stopped container's stats say nothing
    said = '{"type":"stats","id":"x","data":{"memory":{"usage":{"usage":209715200}}}}'
    assert runsc_memory(said) == 209715200
    assert runsc_memory("not json") is None


def _s(at: float, cpu: float | None, mem: int, net: int) -> MachineSample:
    return MachineSample(at=at, step_s=5, cpu_cores=cpu, memory_bytes=mem,
                         memory_limit_bytes=10, net_in_bytes=net)  # fmt: skip


def test_samples_merge_into_buckets_by_their_end() -> None:
    assert bucket_end(60, 60) == 60
    assert bucket_end(61, 60) == 120
    merged = aggregate([_s(55, 1.0, 100, 1), _s(60, 0.0, 300, 2), _s(65, None, 50, 4)], 60)
    assert [(m.at, m.step_s, m.cpu_cores, m.memory_bytes, m.net_in_bytes) for m in merged] == [
        (60, 60, 0.5, 200, 3), (120, 60, None, 50, 4)]  # fmt: skip
    assert merged[0].memory_limit_bytes == 10
