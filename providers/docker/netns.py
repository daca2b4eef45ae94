"""A container's network namespace, as the host sees it: for the machine's egress policy
(providers/egress/nftables.py) and its resolver (providers/egress/dns.py), which root on the
engine's own host writes and serves there."""

from __future__ import annotations

from pathlib import Path

from contracts.errors import NotSupported


def container_pid(machine_id: str, pid: int, container_id: str) -> int:
    """``pid``, the running container's first process as its engine reports it, if that is a
    process of this host in the container's cgroup; else NotSupported (a remote engine's pid
    is some other process of this host, or none)."""
    try:
        mine = container_id in Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        mine = False
    if not mine:
        raise NotSupported(
            f"machine {machine_id}'s Docker engine is not on this host: its egress policy "
            "needs the engine's host (its network namespace)"
        )
    return pid
