"""The webhook rules of this process (controlplane/policy/webhook_rules.py says what they
refuse): the platform's own addresses as this host finds them (its interfaces, NATS's and
Redis's names resolved here) and the platform's services' ports.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from controlplane.policy import Rules
from controlplane.settings import Settings
from providers.egress.addresses import platform_addresses, resolve as resolve_hosts
from providers.sandbox import nats_servers


async def platform_rules(settings: Settings) -> Rules:
    """This process's rules: NATS's, Redis's and this host's addresses are the platform's, and
    the ports of NATS, Redis, the gateway, its previews, metrics and the secrets' proxy its
    services'."""
    platform = set(await platform_addresses(settings))
    services = {port for _, port in nats_servers(settings.nats_url)}
    for host, port in _redis_hosts(settings):
        services.add(port)
        try:
            platform |= {ipaddress.ip_address(h) for h, _ in await resolve_hosts([(host, port)])}
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
