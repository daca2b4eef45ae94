"""Where a webhook may be sent: the platform makes the request for a tenant, so the rules of a
machine's egress hold (server-side request forgery): never to a loopback, link-local, private,
reserved or multicast address, nor to one of the platform's own (NATS's, Redis's, this host's),
unless ``FLEET_WEBHOOK_ALLOW_PRIVATE`` names its network.

A URL's name is resolved and its addresses checked when the endpoint is made (the gateway,
for a clear refusal) and again at every delivery (the webhooks service), which then connects
to the address it checked, never resolving twice: a name that changes its answer between the
check and the connection (DNS rebinding) moves nothing.

The platform's own addresses a process's ``Rules`` hold are found on its host
(controlplane/host_addresses.py, ``platform_rules``).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiodns

from contracts.gateway.webhooks import parse_url, target_of

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``await resolve(host, port)``: the addresses of a name.
Resolve = Callable[[str, int], Awaitable[list[Address]]]


class Refused(Exception):
    """No webhook may be sent to this URL (the message says why)."""


#: A network a webhook may go to although it is not public, and its one port (None: any).
Allowance = tuple[Network, int | None]
#: IPv6 prefixes whose addresses carry an IPv4 address in their last 32 bits: NAT64's
#: well-known prefix and the deprecated IPv4-compatible form (``::a.b.c.d``).
_CARRY_LAST_32 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("::/96"))


@dataclass(frozen=True)
class Rules:
    #: The platform's own addresses.
    platform: frozenset[Address]
    #: Where a webhook may go although private (``FLEET_WEBHOOK_ALLOW_PRIVATE``).
    allowed: tuple[Allowance, ...] = ()
    #: The platform's services' ports: on a platform address, refused whatever is allowed.
    services: frozenset[int] = frozenset()

    def refusal(self, addr: Address, port: int | None = None) -> str | None:
        """Why no webhook may go to ``addr`` (at ``port``; None: it may). An IPv6 address that
        carries an IPv4 one (NAT64, 6to4, Teredo, IPv4-compatible, IPv4-mapped) is judged as
        that IPv4 address first: a gateway on the way would send it there. (First, because
        which of those prefixes Python's ``is_global`` calls reserved moves between its
        versions: the reason must not.)"""
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        for inner in carried(addr):
            if (inner_why := self._refusal(inner, port)) is not None:
                return f"{addr} carries {inner}: {inner_why}"
        return self._refusal(addr, port)

    def private(self, addr: Address, port: int) -> bool:
        """Whether ``addr`` is reached only through an allowance (no answer of it is kept)."""
        return Rules(self.platform, (), self.services).refusal(addr, port) is not None

    def _refusal(self, addr: Address, port: int | None) -> str | None:
        if addr in self.platform and port in self.services:
            return f"{addr} port {port} is a service of the platform"
        if any(addr.version == net.version and addr in net and only in (None, port)
               for net, only in self.allowed):  # fmt: skip
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


def carried(addr: Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (none for an IPv4 address)."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return []
    out = [a for a in (addr.sixtofour, *(addr.teredo or ())) if a is not None]
    if any(addr in net for net in _CARRY_LAST_32) and int(addr) > 1:
        out.append(ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF))
    return out


@dataclass(frozen=True)
class Target:
    """A checked destination: connect to ``address``, speak to ``host``."""

    address: Address
    port: int
    host: str
    tls: bool
    #: The request target (path and query).
    path: str
    #: Reached only through ``FLEET_WEBHOOK_ALLOW_PRIVATE``: what it answers is not kept.
    private: bool = False


class NameLookups:
    """Async context manager: a URL's name looked up by c-ares (``aiodns``), as the system's
    resolver would (``/etc/hosts``, then ``/etc/resolv.conf``'s servers), but on the event
    loop: a lookup is cancelled with the attempt that made it, and names whose servers never
    answer hold no thread (``getaddrinfo`` in a thread pool would, until every lookup and
    everything else on that pool waited behind them). ``nameservers``: other servers than
    the system's."""

    def __init__(self, nameservers: Sequence[str] = ()) -> None:
        self._nameservers = list(nameservers)
        self._resolver: aiodns.DNSResolver | None = None

    async def __aenter__(self) -> NameLookups:
        self._made()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._resolver is not None:
            await self._resolver.close()

    def _made(self) -> aiodns.DNSResolver:
        if self._resolver is None:  # a gateway made in a test may look up without entering
            self._resolver = aiodns.DNSResolver(self._nameservers or None)
        return self._resolver

    async def __call__(self, host: str, port: int) -> list[Address]:
        try:
            got = await self._made().getaddrinfo(host, port=port, type=socket.SOCK_STREAM)
        except aiodns.error.DNSError:
            raise Refused(f"{host} does not resolve") from None
        return [ipaddress.ip_address(n.addr[0].decode().split("%")[0]) for n in got.nodes]


async def check(url: str, rules: Rules, resolve: Resolve) -> Target:
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
        why = rules.refusal(addr, port)
        if why is None:
            return Target(addr, port, host, tls, target_of(parts), rules.private(addr, port))
        reasons.append(why)
    raise Refused(f"{host}: {reasons[0] if reasons else 'no address'} (webhooks go to public "
                  "addresses only: FLEET_WEBHOOK_ALLOW_PRIVATE names exceptions)")  # fmt: skip
