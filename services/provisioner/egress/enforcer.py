"""Enforcing an instance's egress policy on this host's machines (providers/egress/nftables.py): at
a machine's start, before the platform announces it (so nothing of the instance's runs in it
before), again whenever the policy changes (``host.applyEgress``, from the gateway), and at the
provisioner's own start for the machines it resumes. Each machine's resolver is this host's DNS
proxy (providers/egress/dns.py), attached at the same points."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from functools import partial

import msgspec
import structlog

from contracts.errors import NotSupported
from contracts.gateway.network import EgressPolicy
from contracts.models import Machine
from controlplane.host_addresses import nats_servers, platform_addresses, resolve
from controlplane.settings import Settings
from controlplane.store import Store
from providers.base import InterfaceEgress, NetnsHolder, PastaOwned, capability
from providers.egress import (
    DnsCaps,
    DnsProxy,
    EgressProxy,
    HostDoor,
    OnRefused,
    PlatformAddresses,
    PolicyOf,
    host_upstream,
    netdev as egress_netdev,
    nftables as egress,
)
from providers.gvisor import gateway_endpoints
from services.provisioner.egress.events import EgressEvents

log = structlog.get_logger(__name__)
_SCRIPTS_KEPT = 16
_NFT_AT_ONCE = 8


async def dns_proxy(
    settings: Settings, on_refused: OnRefused | None = None,
    platform: PlatformAddresses | None = None, policy_of: PolicyOf | None = None,
) -> DnsProxy:  # fmt: skip
    """This host's proxy: its upstream, the platform's addresses it never answers with
    (``platform``, else found now), and where it reads a machine's policy as stored
    (``EgressPolicies.policy_of``)."""
    addresses = platform or PlatformAddresses(await platform_addresses(settings))
    caps = DnsCaps(rate=settings.egress_dns_rate, burst=max(1, int(2 * settings.egress_dns_rate)),
                   concurrency=settings.egress_dns_concurrency)  # fmt: skip
    return DnsProxy(host_upstream(settings.egress_dns_upstream), addresses, on_refused, caps,
                    policy_of)  # fmt: skip


class EgressPolicies:
    """The instance of each machine this host's resolver serves, and that instance's policy as
    stored now: what the enforcer tells (``serve``, ``forget``) and the resolver reads
    (``policy_of``), made before both."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._instances: dict[str, str] = {}

    def serve(self, machine_id: str, instance_id: str) -> None:
        self._instances[machine_id] = instance_id

    def forget(self, machine_id: str) -> None:
        self._instances.pop(machine_id, None)

    async def policy_of(self, machine_id: str) -> EgressPolicy:
        """The policy of the machine's instance (open for a machine not served here)."""
        instance_id = self._instances.get(machine_id)
        if instance_id is None:
            return EgressPolicy()
        return await self.store.instance_settings.egress(instance_id)


def no_names(machine_id: str, policy: EgressPolicy) -> None:
    """NotSupported if ``policy`` names hosts: gVisor's stack never asks the platform's DNS."""
    names = egress_netdev.names(policy)
    if names:
        raise NotSupported(
            f"{machine_id} runs the gvisor runtime, on which egress policy by name is not "
            f"enforced, and its instance's names {names[:3]} (docs/limitations.md)",
            data={"runtime": "gvisor"},
        )


async def netns_policy(
    store: Store, nats_url: str, machine_id: str, pid: int, *, proxy_port: int = 0
) -> None:
    """The machine's instance's policy written into the network namespace of ``pid`` (a new
    one, before a gvisor restore runs in it: providers/gvisor/runsc.py ``NetnsReady``), so that no
    restored process meets a namespace without it; nothing for an open policy (a new
    namespace has no table). The enforcer writes it again once the machine runs."""
    machine = await store.get_machine(machine_id)
    policy = await store.instance_settings.egress(machine.instance_id)
    if policy.is_open():
        return
    no_names(machine_id, policy)
    platform = [*await resolve(nats_servers(nats_url)),
                *gateway_endpoints(nats_url, proxy_port)]  # fmt: skip
    ruleset = await asyncio.to_thread(egress.compile_ruleset, policy, platform)
    await egress_netdev.apply(pid, ruleset, policy.default == "deny", machine_id)
    log.info("egress.applied_before_restore", machine_id=machine_id, default=policy.default)


class EgressEnforcer:
    def __init__(
        self,
        store: Store,
        providers: Mapping[str, object],
        nats_url: str,
        dns: DnsProxy | None = None,
        refusals: EgressEvents | None = None,
        proxy: EgressProxy | None = None,
        door: HostDoor | None = None,
        policies: EgressPolicies | None = None,
    ) -> None:
        """``policies``: the machines this host's resolver serves (``dns``'s ``policy_of``
        reads them)."""
        self.store = store
        #: The host's egress proxy (secrets added on the way out), served beside the resolver,
        #: and its door on the host for gvisor machines.
        self.proxy = proxy
        self.door = door
        self.providers = providers
        self.nats_url = nats_url
        self.dns = dns
        #: The machines' refusal events: a machine that stops takes its event budget along.
        self.refusals = refusals
        self._platform: list[egress.Endpoint] | None = None
        #: Compiled rulesets by policy: a change reaches many machines with the same one, at
        #: once; the first compiles it and the others wait for it.
        self._scripts: dict[bytes, asyncio.Future[egress.Ruleset]] = {}
        #: What this process last wrote into each machine's table, and into which namespace
        #: (its pid): a change to it loads only what differs.
        self._tables: dict[str, tuple[int, egress.Ruleset]] = {}
        #: nft runs at a time: a change reaching many machines of the host is CPU work (nft's
        #: and the kernel's) with waits between (each transaction's commit), so a few per core.
        self._nft = asyncio.Semaphore(_NFT_AT_ONCE)
        self.policies = policies or EgressPolicies(store)

    async def platform(self) -> list[egress.Endpoint]:
        """NATS's addresses and ports: always open (resolved once)."""
        if self._platform is None:
            self._platform = await resolve(nats_servers(self.nats_url))
        return self._platform

    async def enforce(self, machine: Machine, *, at_start: bool = False) -> bool:
        """Write the machine's instance's policy into its network namespace and serve its
        resolver; False: not running (or no namespace of its own under the default policy)."""
        return await self.enforce_on(machine.id, machine.instance_id, machine.provider,
                                     at_start=at_start)  # fmt: skip

    async def enforce_on(
        self, machine_id: str, instance_id: str, provider_name: str, *, at_start: bool = False
    ) -> bool:
        policy = await self.store.instance_settings.egress(instance_id)
        provider = self.providers.get(provider_name)
        try:
            holder = capability(provider, NetnsHolder)
            if holder is None:
                raise NotSupported(f"provider {provider_name!r} cannot enforce egress policy")
            pid = await holder.netns_pid(machine_id)
        except NotSupported:
            if policy.is_open():
                return False
            raise
        if pid is None:
            return False
        frames = capability(provider, InterfaceEgress)
        on_interfaces = frames is not None and await asyncio.to_thread(
            frames.egress_on_interfaces, machine_id
        )
        if on_interfaces:
            self._at_the_door(provider, machine_id, instance_id)
        if not (at_start and policy.is_open()):  # a new namespace has no table: all open
            write = self._write_on_interfaces if on_interfaces else self._write
            how = await write(machine_id, pid, policy)
            log.info("egress.applied", machine_id=machine_id, default=policy.default,
                     allow=len(policy.allow), deny=len(policy.deny), how=how)  # fmt: skip
        if self.dns is not None and not on_interfaces:  # gVisor's stack has its own loopback
            self.policies.serve(machine_id, instance_id)
            try:
                await self.dns.attach(machine_id, pid, policy)
            except egress.EgressUnavailable as exc:  # another provisioner of the host has it
                log.info("egress.dns_elsewhere", machine_id=machine_id, error=str(exc))
            await self._attach_proxy(machine_id, instance_id, pid)
        return True

    def _at_the_door(self, provider: object, machine_id: str, instance_id: str) -> None:
        """A gvisor machine of a local provider is served at the proxy's door on the host."""
        pasta = capability(provider, PastaOwned)
        if self.door is not None and self.door.serving and pasta is not None:
            self.door.attach(machine_id, instance_id, pasta.pasta_owners(machine_id))

    def _door_port(self) -> int:
        return self.door.port if self.door is not None else 0

    async def _attach_proxy(self, machine_id: str, instance_id: str, pid: int) -> None:
        if self.proxy is None:
            return
        try:
            await self.proxy.attach(machine_id, instance_id, pid)
        except (egress.EgressUnavailable, OSError) as exc:  # another provisioner has it
            log.info("egress.proxy_elsewhere", machine_id=machine_id, error=str(exc))

    async def _write_on_interfaces(self, machine_id: str, pid: int, policy: EgressPolicy) -> str:
        """The policy on the interfaces of the machine's namespace (a gvisor machine's:
        providers/egress/netdev.py), a whole new table each time; names refused by name."""
        no_names(machine_id, policy)
        new = await self.compiled(policy, gvisor=True)
        async with self._nft:
            await egress_netdev.apply(pid, new, policy.default == "deny", machine_id)
        return "replaced"

    async def _write(self, machine_id: str, pid: int, policy: EgressPolicy) -> str:
        """Make ``policy`` the machine's table: only what changed when this process wrote its
        table last (its namespace still the same), else a whole new table; how it went."""
        new = await self.compiled(policy)
        had = self._tables.pop(machine_id, None)
        change = new.change_from(had[1]) if had is not None and had[0] == pid else None
        async with self._nft:
            if change is not None:
                try:
                    await egress.apply(pid, change, machine_id)
                except egress.EgressUnavailable:
                    pass  # another provisioner of the host wrote it since: a whole new table
                else:
                    self._tables[machine_id] = (pid, new)
                    return "changed"
            await egress.apply(pid, new.script, machine_id)
        self._tables[machine_id] = (pid, new)
        return "replaced"

    async def compiled(self, policy: EgressPolicy, gvisor: bool = False) -> egress.Ruleset:
        """``policy``'s ruleset; ``gvisor``: with NATS at the gateway among the platform's
        endpoints (providers/gvisor/gateway.py)."""
        key = msgspec.json.encode(policy) + (b"+gvisor" if gvisor else b"")
        made = self._scripts.get(key)
        if made is None:
            made = asyncio.ensure_future(self._compile(policy, gvisor))
            if len(self._scripts) >= _SCRIPTS_KEPT:
                self._scripts.pop(next(iter(self._scripts)))
            self._scripts[key] = made
            made.add_done_callback(partial(self._drop_failed, key))
        return await asyncio.shield(made)

    async def _compile(self, policy: EgressPolicy, gvisor: bool) -> egress.Ruleset:
        platform = await self.platform()
        if gvisor:
            platform = [*platform, *gateway_endpoints(self.nats_url, self._door_port())]
        ruleset = await asyncio.to_thread(egress.compile_ruleset, policy, platform)
        _ = ruleset.script, ruleset.marker  # built off the event loop, once
        return ruleset

    def _drop_failed(self, key: bytes, made: asyncio.Future[egress.Ruleset]) -> None:
        if (made.cancelled() or made.exception() is not None) and self._scripts.get(key) is made:
            del self._scripts[key]

    def forget(self, machine_id: str) -> None:
        """The machine stopped: its resolver socket goes (it would keep the namespace), and so
        does its budget of refusal events (one per machine that ever ran, else)."""
        self.policies.forget(machine_id)
        self._tables.pop(machine_id, None)
        if self.dns is not None:
            self.dns.detach(machine_id)
        if self.proxy is not None:
            self.proxy.detach(machine_id)
        if self.door is not None:
            self.door.detach(machine_id)
        if self.refusals is not None:
            self.refusals.forget(machine_id)
