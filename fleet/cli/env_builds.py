"""`fleet environments list|build|rm`: the environment builds cache (docs/environments.md)."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from fleet.cli.common import SubAction, command, emit, group
from fleet.cli.render import table

if TYPE_CHECKING:
    from contracts.gateway.env_builds import EnvironmentList
    from fleet.client import FleetClient

Args = argparse.Namespace


def register(sub: SubAction) -> None:
    g = group(sub, "environments", "the cache of environment builds on a host")
    ls = command(g, "list", _list, "cached builds, least recently used first (admin)")
    b = command(g, "build", _build, "build an instance's environment now")
    b.add_argument("instance_id")
    rm = command(g, "rm", _rm, "remove a cached build no machine runs (admin)")
    rm.add_argument("environment_id", help="a build's id, or a unique prefix of 12+ characters")
    for p in (ls, b, rm):
        p.add_argument("--host", dest="host_id", help="the host's engine (default: the platform's)")


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def builds_table(got: EnvironmentList) -> str:
    if not got.environments:
        return f"no cached environment build on host {got.host_id}"
    now = time.time()
    rows = [[e.id[:12], _size(e.size), f"{max(0, now - e.last_used):.0f}s ago",
             ",".join(e.instances) or "-", ",".join(e.machines) or "-"]
            for e in got.environments]  # fmt: skip
    return table(rows, ["ID", "SIZE", "LAST USED", "INSTANCES", "MACHINES"])


async def _list(c: FleetClient, a: Args) -> int:
    got = await c.list_environments(a.host_id)
    return emit(a, got, lambda: builds_table(got))


async def _build(c: FleetClient, a: Args) -> int:
    got = await c.build_environment(a.instance_id, a.host_id)
    return emit(a, got, lambda: f"{got.environment}: build {got.id[:12]} ({got.image_id})")


async def _rm(c: FleetClient, a: Args) -> int:
    got = await c.delete_environment(a.environment_id, a.host_id)
    return emit(a, got, lambda: f"removed {got.image}")
