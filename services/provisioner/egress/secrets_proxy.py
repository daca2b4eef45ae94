"""This host's egress proxy (providers/egress/proxy.py), joined to the platform: the instance's
policy and secrets from the store (the secrets kept between requests until they change:
services/provisioner/egress/secrets_cache.py), its CA's certificates, the use counts, the upstreams'
trust."""

from __future__ import annotations

import base64
import ssl
from collections.abc import Collection
from functools import partial
from urllib.parse import SplitResult, urlsplit

import msgspec
import structlog

from contracts.bus.events import MachineSecretUsed
from contracts.gateway.secrets import covers
from contracts.ids import new_event_id
from contracts.models import GitCredentials
from controlplane.bus import Bus
from controlplane.machines.machine_config import proxied_repo
from controlplane.security.crypto import SecretBox
from controlplane.security.secret_ca import LeafContexts, instance_ca
from controlplane.settings import Settings
from controlplane.store import Store, StoredSecret
from providers.egress import Address, EgressProxy, HostDoor, Platform, recorded_pastas
from providers.gvisor import proxy_listen
from services.provisioner.egress.secrets_cache import Read, SecretsCache

log = structlog.get_logger(__name__)
#: The name a repo's credentials are counted under (no secret's name has a colon).
REPO_SECRET_PREFIX = "repo:"  # noqa: S105 - a name, not a password


def upstream_tls(settings: Settings) -> ssl.SSLContext:
    """What an upstream's certificate is checked against: the system's CAs, and
    ``FLEET_SECRETS_UPSTREAM_CA`` (a PEM bundle) for private upstreams."""
    ctx = ssl.create_default_context()
    ctx.set_alpn_protocols(["http/1.1"])
    if settings.secrets_upstream_ca:
        ctx.load_verify_locations(cafile=settings.secrets_upstream_ca)
    return ctx


async def repo_secrets(
    store: Store, box: SecretBox, instance_id: str, host: str, port: int
) -> list[StoredSecret]:
    """Each private repo over HTTPS at ``host:port`` as a secret for it: basic auth, as git
    sends it, so that a machine's clones, fetches and pushes need no token of their own. A
    repo's credentials are read only for a connection to its host."""
    out: list[StoredSecret] = []
    for repo in await store.list_repos(instance_id):
        url = urlsplit(repo.url)
        if not proxied_repo(repo) or not covers([_host_entry(url)], host, port):
            continue
        sealed = await store.repo_secret(instance_id, repo.path)
        if sealed is None:
            continue
        creds = msgspec.json.decode(box.decrypt(sealed), type=GitCredentials)
        basic = base64.b64encode(f"{creds.username}:{creds.token}".encode()).decode()
        out.append(StoredSecret(
            name=f"{REPO_SECRET_PREFIX}{repo.path}", hosts=[_host_entry(url)],
            header="Authorization", format="Basic {value}", sealed=box.encrypt(basic),
        ))  # fmt: skip
    return out


def _host_entry(url: SplitResult) -> str:
    host = url.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{url.port or 443}"


def gvisor_door(settings: Settings, proxy: EgressProxy) -> HostDoor:
    """The proxy's door for this host's gvisor machines (``FLEET_SECRETS_PROXY_PORT``, 0:
    none, then a door that serves nobody), knowing them by the pastas this stack recorded."""
    at = proxy_listen(settings.nats_url, settings.secrets_proxy_port)
    return HostDoor(proxy, at, partial(recorded_pastas, settings.data_path),
                    enabled=bool(settings.secrets_proxy_port))  # fmt: skip


def stored_secrets(settings: Settings, store: Store) -> Read:
    """An instance's secrets for a host and port as the store has them now: its own that name
    the host, and its private repos' there."""
    box = SecretBox(settings.secret_key)

    async def read(instance_id: str, host: str, port: int) -> list[StoredSecret]:
        named = [s for s in await store.secrets.stored(instance_id) if covers(s.hosts, host, port)]
        return [*named, *await repo_secrets(store, box, instance_id, host, port)]

    return read


def secrets_cache(settings: Settings, store: Store, bus: Bus) -> SecretsCache:
    """What the proxy read of the store, kept until a change is announced on ``bus``, the bus
    is lost, or ``FLEET_REVOCATION_ROUND_S`` has passed
    (services/provisioner/egress/secrets_cache.py)."""
    return SecretsCache(stored_secrets(settings, store), bus.nc, settings.revocation_round_s)


def secrets_proxy(
    settings: Settings, store: Store, platform_addresses: Collection[Address], bus: Bus,
    secrets: Read,
) -> EgressProxy:  # fmt: skip
    """This host's proxy: the instance's policy from the store, its ``secrets`` as ``secrets``
    gives them (a ``SecretsCache``'s, asked for each request), its CA's certificates, each use
    counted."""
    box = SecretBox(settings.secret_key)
    leaves = LeafContexts(box)

    async def leaf(instance_id: str, host: str) -> ssl.SSLContext:
        return leaves.context(instance_id, await instance_ca(store, box, instance_id), host)

    async def used(instance_id: str, name: str, machine_id: str, host: str) -> None:
        if await store.secrets.used(instance_id, name, machine_id):
            log.info("egress.secret_first_use", machine_id=machine_id, instance_id=instance_id,
                     secret=name, host=host)  # fmt: skip
            # Audited by the gateway (only it may write the audit log): the name, never the value.
            await bus.publish(MachineSecretUsed(event_id=new_event_id(), machine_id=machine_id,
                                                secret=name, host=host))  # fmt: skip

    platform = Platform(
        policy=store.instance_settings.egress,
        secrets=secrets,
        leaf=leaf,
        open_value=box.decrypt,
        used=used,
    )
    return EgressProxy(platform, platform_addresses, upstream_tls(settings))
