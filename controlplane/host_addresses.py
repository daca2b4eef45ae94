"""The platform's own addresses as this host finds them: its interfaces, NATS's names (and
Redis's) resolved here. No machine's traffic goes to them unless its egress policy names them
(the provisioner's egress and DNS proxies, providers/egress/addresses.py), and no tenant's
webhook goes to them or to the platform's services' ports (``platform_rules``, what
controlplane/policy/webhook_rules.py holds a target to).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import shutil
import socket
import subprocess
from urllib.parse import urlsplit

from contracts.errors import ProviderError
from controlplane.policy import Rules
from controlplane.settings import Settings

Endpoint = tuple[str, int]
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def nats_servers(nats_url: str) -> list[tuple[str, int]]:
    """The host and port of each NATS server in ``nats_url`` (a comma-separated list)."""
    out: list[tuple[str, int]] = []
    for part in nats_url.split(","):
        url = urlsplit(part.strip() if "://" in part else f"nats://{part.strip()}")
        if url.hostname is not None:
            out.append((url.hostname, url.port or 4222))
    return out


async def resolve(hosts: list[tuple[str, int]]) -> list[Endpoint]:
    found: set[Endpoint] = set()
    for host, port in hosts:
        infos = await asyncio.to_thread(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
        found |= {(str(info[4][0]), port) for info in infos}
    return sorted(found)


def host_addresses() -> list[IpAddress]:
    """Every address of this host's interfaces (a machine's answer may point at none)."""
    ip = shutil.which("ip")
    if ip is None:
        raise ProviderError("ip is not installed (the platform refuses machines and webhooks "
                            "this host's own addresses): apt-get install iproute2")  # fmt: skip
    out = subprocess.run([ip, "-j", "addr", "show"], capture_output=True, check=False)
    links = json.loads(out.stdout or b"[]")
    return [ipaddress.ip_address(a["local"].split("%")[0])
            for link in links for a in link.get("addr_info", []) if "local" in a]  # fmt: skip


async def platform_addresses(settings: Settings) -> frozenset[IpAddress]:
    """NATS's and this host's own addresses: never a machine's destination unless named."""
    platform = await resolve(nats_servers(settings.nats_url))
    addresses = {ipaddress.ip_address(h) for h, _ in platform}
    return frozenset(addresses | set(await asyncio.to_thread(host_addresses)))


async def platform_rules(settings: Settings) -> Rules:
    """This process's rules: NATS's, Redis's and this host's addresses are the platform's, and
    the ports of NATS, Redis, the gateway, its previews, metrics and the secrets' proxy its
    services'."""
    platform = set(await platform_addresses(settings))
    services = {port for _, port in nats_servers(settings.nats_url)}
    for host, port in _redis_hosts(settings):
        services.add(port)
        try:
            platform |= {ipaddress.ip_address(h) for h, _ in await resolve([(host, port)])}
        except OSError:  # a Redis name that does not resolve here is reached by none either
            continue
    services |= {settings.port, settings.preview_port, settings.metrics_port,
                 settings.secrets_proxy_port} - {0}  # fmt: skip
    return Rules(frozenset(platform), settings.webhook_allowances, frozenset(services))


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
