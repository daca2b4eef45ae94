"""This host's egress proxy (providers/egress_proxy.py), joined to the platform: the instance's
policy and secrets from the store, its CA's certificates, the use counts, the upstreams' trust."""

from __future__ import annotations

import ssl

import structlog

from controlplane.crypto import SecretBox
from controlplane.secret_ca import LeafContexts, instance_ca
from controlplane.settings import Settings
from controlplane.store import Store
from providers.egress_proxy import Address, EgressProxy, Platform

log = structlog.get_logger(__name__)


def upstream_tls(settings: Settings) -> ssl.SSLContext:
    """What an upstream's certificate is checked against: the system's CAs, and
    ``FLEET_SECRETS_UPSTREAM_CA`` (a PEM bundle) for private upstreams."""
    ctx = ssl.create_default_context()
    ctx.set_alpn_protocols(["http/1.1"])
    if settings.secrets_upstream_ca:
        ctx.load_verify_locations(cafile=settings.secrets_upstream_ca)
    return ctx


def secrets_proxy(
    settings: Settings, store: Store, platform_addresses: frozenset[Address]
) -> EgressProxy:
    box = SecretBox(settings.secret_key)
    leaves = LeafContexts(box)

    async def leaf(instance_id: str, host: str) -> ssl.SSLContext:
        return leaves.context(instance_id, await instance_ca(store, box, instance_id), host)

    async def used(instance_id: str, name: str, machine_id: str) -> None:
        if await store.secrets.used(instance_id, name, machine_id):
            log.info("egress.secret_first_use", machine_id=machine_id, instance_id=instance_id,
                     secret=name)  # fmt: skip

    platform = Platform(
        policy=store.instance_settings.egress,
        secrets=store.secrets.stored,
        leaf=leaf,
        open_value=box.decrypt,
        used=used,
    )
    return EgressProxy(platform, platform_addresses, upstream_tls(settings))
