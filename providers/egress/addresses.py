"""What no machine's traffic is sent to by the platform unless the machine's egress policy
names it: the host's own addresses and NATS's, and every subnet of a network machines live on
(each network of the docker engine, kept current as networks come and go:
services/provisioner/egress/docker_networks.py).

The egress proxy and the DNS proxy act from the host's network namespace, where another
machine's bridge address is reached as the host reaches it: past the machines' network's
``enable_icc=false``, which only the bridge enforces. Those addresses are the platform's as
much as the host's own are. No webhook is sent to them either (providers/egress/webhook_target.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import subprocess
from collections.abc import Iterable, Iterator

import structlog

from contracts.errors import ProviderError
from controlplane.settings import Settings
from providers.egress import nftables as egress
from providers.sandbox import installed, nats_servers

log = structlog.get_logger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class PlatformAddresses:
    """The host's and NATS's addresses (as made), and the machines' networks (replaced as
    they change). Iterating gives the addresses; ``in`` asks both."""

    def __init__(self, addresses: Iterable[Address], networks: Iterable[Network] = ()) -> None:
        self.addresses = frozenset(addresses)
        self._networks = frozenset(networks)

    @property
    def networks(self) -> frozenset[Network]:
        return self._networks

    def networks_are(self, networks: Iterable[Network]) -> None:
        """The machines' networks from now on."""
        now = frozenset(networks)
        if now != self._networks:
            log.info("egress.platform_networks", networks=sorted(str(n) for n in now))
        self._networks = now

    def __contains__(self, addr: object) -> bool:
        if not isinstance(addr, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return addr in self.addresses or any(
            addr.version == n.version and addr in n for n in self._networks
        )

    def __iter__(self) -> Iterator[Address]:
        return iter(self.addresses)

    def __len__(self) -> int:
        return len(self.addresses)


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
