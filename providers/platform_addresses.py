"""The platform's own addresses: NATS's and this host's. A machine's egress never reaches them
unless its policy names them (services/provisioner/egress.py), and no webhook is sent to them
(providers/webhook_target.py)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import subprocess

from contracts.errors import ProviderError
from controlplane.settings import Settings
from providers import egress_nftables as egress
from providers.netns import installed, nats_servers


async def resolve(hosts: list[tuple[str, int]]) -> list[egress.Endpoint]:
    found: set[egress.Endpoint] = set()
    for host, port in hosts:
        infos = await asyncio.to_thread(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
        found |= {(str(info[4][0]), port) for info in infos}
    return sorted(found)


def host_addresses() -> list[egress.IpAddress]:
    """Every address of this host's interfaces (a machine's answer may point at none)."""
    ip = installed(
        "ip",
        ProviderError(
            "ip is not installed (the provisioner refuses machines "
            "this host's own addresses): apt-get install iproute2"
        ),
    )
    out = subprocess.run([ip, "-j", "addr", "show"], capture_output=True, check=False)
    links = json.loads(out.stdout or b"[]")
    return [ipaddress.ip_address(a["local"].split("%")[0])
            for link in links for a in link.get("addr_info", []) if "local" in a]  # fmt: skip


async def platform_addresses(settings: Settings) -> frozenset[egress.IpAddress]:
    """NATS's and this host's own addresses: never a machine's destination unless named."""
    platform = await resolve(nats_servers(settings.nats_url))
    addresses = {ipaddress.ip_address(h) for h, _ in platform}
    return frozenset(addresses | set(await asyncio.to_thread(host_addresses)))
