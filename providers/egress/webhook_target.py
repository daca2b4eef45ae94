"""Where a webhook may be sent: the platform makes the request for a tenant, so the rules of a
machine's egress hold (server-side request forgery): never to a loopback, link-local, private,
reserved or multicast address, nor to one of the platform's own (NATS's, Redis's, this host's),
unless ``FLEET_WEBHOOK_ALLOW_PRIVATE`` names its network.

A URL's name is resolved and its addresses checked when the endpoint is made (the gateway,
for a clear refusal) and again at every delivery (the webhooks service), which then connects
to the address it checked, never resolving twice: a name that changes its answer between the
check and the connection (DNS rebinding) moves nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from contracts.gateway_webhooks import parse_url, target_of
from controlplane.settings import Settings
from providers.egress.addresses import platform_addresses, resolve as resolve_hosts

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``await resolve(host, port)``: the addresses of a name.
Resolve = Callable[[str, int], Awaitable[list[Address]]]


class Refused(Exception):
    """No webhook may be sent to this URL (the message says why)."""


@dataclass(frozen=True)
class Rules:
    #: The platform's own addresses.
    platform: frozenset[Address]
    #: Networks allowed although private (``FLEET_WEBHOOK_ALLOW_PRIVATE``).
    allowed: tuple[Network, ...] = ()

    def refusal(self, addr: Address) -> str | None:
        """Why no webhook may go to ``addr`` (None: it may)."""
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if any(addr.version == net.version and addr in net for net in self.allowed):
            return None
        if addr in self.platform:
            return f"{addr} is an address of the platform"
        if addr.is_loopback:
            return f"{addr} is a loopback address"
        if addr.is_link_local:
            return f"{addr} is a link-local address"
        if addr.is_multicast or addr.is_unspecified or not addr.is_global:
            return f"{addr} is a private or reserved address"
        return None


@dataclass(frozen=True)
class Target:
    """A checked destination: connect to ``address``, speak to ``host``."""

    address: Address
    port: int
    host: str
    tls: bool
    #: The request target (path and query).
    path: str


async def system_resolve(host: str, port: int) -> list[Address]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise Refused(f"{host} does not resolve") from None
    return [ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos]


async def check(url: str, rules: Rules, resolve: Resolve = system_resolve) -> Target:
    """The address to send a webhook for ``url`` to: the first of its name's that the rules
    allow; Refused when none is (or the URL is none a webhook may have)."""
    try:
        parts = parse_url(url)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    host = parts.hostname or ""
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    try:
        addresses: list[Address] = [ipaddress.ip_address(host)]
    except ValueError:
        addresses = await resolve(host, port)
    reasons = []
    for addr in addresses:
        why = rules.refusal(addr)
        if why is None:
            return Target(addr, port, host, tls, target_of(parts))
        reasons.append(why)
    raise Refused(f"{host}: {reasons[0] if reasons else 'no address'} (webhooks go to public "
                  "addresses only: FLEET_WEBHOOK_ALLOW_PRIVATE names exceptions)")  # fmt: skip


async def platform_rules(settings: Settings) -> Rules:
    """This process's rules: NATS's, Redis's and this host's addresses are the platform's."""
    platform = set(await platform_addresses(settings))
    for host, port in _redis_hosts(settings):
        try:
            platform |= {ipaddress.ip_address(h) for h, _ in await resolve_hosts([(host, port)])}
        except OSError:  # a Redis name that does not resolve here is reached by none either
            continue
    return Rules(frozenset(platform), settings.webhook_allowed_networks)


def _redis_hosts(settings: Settings) -> list[tuple[str, int]]:
    out = []
    url = urlsplit(settings.redis_url)
    if url.hostname and url.scheme in ("redis", "rediss"):
        out.append((url.hostname, url.port or 6379))
    for part in filter(None, (p.strip() for p in settings.redis_sentinels.split(","))):
        host, sep, port = part.rpartition(":")
        if sep and port.isdigit():
            out.append((host.strip("[]"), int(port)))
        else:
            out.append((part.strip("[]"), 26379))
    return out
