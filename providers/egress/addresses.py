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

import ipaddress
from collections.abc import Iterable, Iterator

import structlog

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
