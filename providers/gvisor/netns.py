"""A gvisor machine's network namespace (providers/gvisor/runsc.py): made for its sandbox, with
pasta as its way out and the gateway's guard, its addresses and routes as pasta set them saved in
its bundle, and given back to a namespace a pause kept (providers/gvisor/pause.py), where runsc had
taken them over."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from pathlib import Path

from base.retry import Backoff, retry_until
from contracts.errors import ProviderError
from providers.gvisor.gateway import guard, maps_gateway
from providers.sandbox import attach

_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


#: In a bundle: its network namespace's addresses and routes as pasta set them, before runsc
#: took them over (``ip addr save``, ``ip route save``): a paused machine's kept namespace has
#: them again before its restore.
NETNS_CONFIG = ("netns-addr", "netns-route")


def has_netns_config(bundle: Path) -> bool:
    return all((bundle / name).is_file() for name in NETNS_CONFIG)


async def netns_config(pid: int, bundle: Path, verb: str) -> None:
    """``ip``'s ``save`` (to ``NETNS_CONFIG``) or ``restore`` (from there) of the addresses
    and routes of the namespace of ``pid``; what is there already stays (``restore`` goes on
    past each one)."""
    addr, route = (str(bundle / name) for name in NETNS_CONFIG)
    script = (f'ip addr {verb} > "$1" && ip route {verb} table all > "$2"' if verb == "save"
              else f'ip addr {verb} < "$1"; ip route {verb} < "$2"')  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        "nsenter", f"--net=/proc/{pid}/ns/net", "/bin/sh", "-c", script, "fleet-netns", addr,
        route, env=_ENV, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    async with asyncio.timeout(30):
        if await proc.wait() != 0 and verb == "save":
            raise ProviderError(f"the network of {bundle.parent.name} could not be read")


async def give_network(pid: int, owner: str, record: Path, nats_url: str,
                       proxy_port: int) -> None:  # fmt: skip
    """pasta on the new namespace of ``pid`` (its pid and start time kept in ``record``:
    providers/sandbox/netns.py ``pasta_record``), and the gateway's guard
    where NATS is on the host's loopback (``nats_url``; the egress proxy's ``proxy_port``)."""
    via_gateway = maps_gateway(nats_url)
    await attach(pid, owner, [], map_gateway=via_gateway, record=record)
    if via_gateway:  # before anything runs there: only NATS's ports of the host's loopback
        await guard(pid, owner, nats_url, proxy_port)


async def await_own_netns(pid: int, timeout_s: float = 10.0) -> None:
    """Until ``pid`` (unshare, then sleep) is in a network namespace other than ours."""
    ours = os.stat("/proc/self/ns/net").st_ino

    async def moved() -> bool:
        with contextlib.suppress(OSError):
            return os.stat(f"/proc/{pid}/ns/net").st_ino != ours
        return False

    async with asyncio.timeout(timeout_s):
        await retry_until(moved, backoff=Backoff(0.01, 0.01, jitter=False))
