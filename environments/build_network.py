"""The network environment builds run on: a bridge of their own whose packets the host refuses.

A build step runs a repo's commands (untrusted input). On the machines' network it could open
a connection to NATS, which listens on that network's gateway address for docker machines, and
the host's other services on any of its addresses. On ``fleet-builds`` it reaches the outside
(the engine's NAT, for package registries) and nothing of the host: a table of the host's own,
``inet fleet_builds``, drops every packet the bridge hands to the host itself (the input hook;
what it forwards outside is the forward hook, untouched). The table is the same whoever writes
it, written in one nft transaction, so any number of provisioners may write it at once.

The rule needs root and the engine on this host; elsewhere builds run on the network given
instead, and a warning says they reach what a machine reaches.
"""

from __future__ import annotations

import asyncio
import os

import aiodocker
import structlog

from base.docker_engine import engine_is_local

log = structlog.get_logger(__name__)

BUILD_NETWORK = "fleet-builds"
#: The bridge's interface name (at most 15 characters), which the host's rule names.
BUILD_BRIDGE = "fleet-builds0"
TABLE = "fleet_builds"


def host_rule() -> str:
    """The ``nft -f`` script: the table made afresh (add, delete, declare: idempotent)."""
    return (
        f"add table inet {TABLE}\ndelete table inet {TABLE}\n"
        f"table inet {TABLE} {{\n"
        "  chain input {\n    type filter hook input priority -10; policy accept;\n"
        f'    iifname "{BUILD_BRIDGE}" drop\n  }}\n}}\n'
    )


async def isolated_network(docker: aiodocker.Docker, fallback: str | None) -> str | None:
    """The network a build runs on: ``fleet-builds`` (made if missing) with the host's rule in
    place, or ``fallback`` when the rule cannot be had (not root, or ``docker`` is the client of
    an engine on another host, where a rule of this host would guard nothing)."""
    local_engine = engine_is_local(docker.docker_host, os.environ)
    if not local_engine or os.geteuid() != 0:
        log.warning("environment.build_network_shared", network=fallback,
                    why="remote engine" if not local_engine else "not root")  # fmt: skip
        return fallback
    await _ensure_bridge(docker)
    proc = await asyncio.create_subprocess_exec(
        "nft", "-f", "-", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await proc.communicate(host_rule().encode())
    if proc.returncode != 0:
        log.warning("environment.build_network_shared", network=fallback,
                    why=f"nft: {err.decode(errors='replace').strip()}")  # fmt: skip
        return fallback
    return BUILD_NETWORK


async def _ensure_bridge(docker: aiodocker.Docker) -> None:
    try:
        await docker.networks.get(BUILD_NETWORK)
        return
    except aiodocker.DockerError as exc:
        if exc.status != 404:
            raise
    try:
        await docker.networks.create({
            "Name": BUILD_NETWORK, "Driver": "bridge", "CheckDuplicate": True,
            "Labels": {"fleet.network": "builds"},
            "Options": {"com.docker.network.bridge.name": BUILD_BRIDGE,
                        "com.docker.network.bridge.enable_icc": "false"},
        })  # fmt: skip
    except aiodocker.DockerError as exc:
        if exc.status != 409:  # another process made it meanwhile
            raise
