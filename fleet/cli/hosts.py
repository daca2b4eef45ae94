"""`fleet hosts`: where machines run (docs/hosts.md)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from fleet.cli.common import EXIT_FAILED, EXIT_OK, SubAction, command, emit, group
from fleet.cli.render import age, table

if TYPE_CHECKING:
    from contracts.gateway.hosts import HostInfo
    from fleet.client import FleetClient


def register(sub: SubAction) -> None:
    g = group(sub, "hosts", "the hosts machines run on (admin)")
    command(g, "list", _hosts_list, "each host: capacity, machines, last heartbeat, state")
    drain = command(g, "drain", _hosts_drain, "stop new placements on a host")
    drain.add_argument("host_id")
    drain.add_argument("--undo", action="store_true", help="the host takes new machines again")
    drain.add_argument(
        "--rebuild",
        action="store_true",
        help="also rebuild its running machines now: their replacements go to other hosts",
    )


def hosts_table(hosts: Sequence[HostInfo]) -> str:
    rows = [
        [
            h.host_id,
            h.state.value + ("+memory-low" if h.memory_low else ""),
            str(h.capacity) if h.capacity is not None else "unlimited",
            str(h.running),
            str(h.stopped),
            f"{age(h.last_heartbeat)} ago",
        ]
        for h in hosts
    ]
    return table(rows, ["HOST", "STATE", "CAPACITY", "RUNNING", "STOPPED", "HEARTBEAT"])


async def _hosts_list(c: FleetClient, a: argparse.Namespace) -> int:
    hosts = await c.list_hosts()
    return emit(a, hosts, lambda: hosts_table(hosts) if hosts else "no host has announced itself")


async def _hosts_drain(c: FleetClient, a: argparse.Namespace) -> int:
    host = await c.drain_host(a.host_id, draining=not a.undo, rebuild=a.rebuild)
    moved = [f"rebuilt {r.machine_id} -> {r.replaced_by}" for r in host.rebuilt]
    moved += [f"not rebuilt {f.machine_id}: error {f.code}: {f.message}" for f in host.not_rebuilt]
    code = emit(a, host, lambda: "\n".join([hosts_table([host]), *moved]))
    return EXIT_FAILED if host.not_rebuilt and code == EXIT_OK else code
