"""Enforcing an instance's egress policy on this host's machines (providers/egress.py): at a
machine's start, before the platform announces it (so nothing of the instance's runs in it
before), and again whenever the policy changes (``host.applyEgress``, from the gateway)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping

import structlog

from contracts.errors import NotSupported
from contracts.models import Machine
from providers import egress
from providers.base import NetnsHolder
from providers.netns import nats_servers
from services.common.store import Store
from services.common.store_network import instance_egress

log = structlog.get_logger(__name__)


class EgressEnforcer:
    def __init__(self, store: Store, providers: Mapping[str, object], nats_url: str) -> None:
        self.store = store
        self.providers = providers
        self.nats_url = nats_url
        self._platform: list[egress.Endpoint] | None = None

    async def platform(self) -> list[egress.Endpoint]:
        """NATS's addresses and ports: always open (resolved once, as the machines' daemons
        were given them)."""
        if self._platform is None:
            found: set[egress.Endpoint] = set()
            for host, port in nats_servers(self.nats_url):
                infos = await asyncio.to_thread(
                    socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM
                )
                found |= {(str(info[4][0]), port) for info in infos}
            self._platform = sorted(found)
        return self._platform

    async def enforce(self, machine: Machine, *, at_start: bool = False) -> bool:
        """Write the machine's instance's policy into its network namespace; False: nothing
        to do (not running, or at its start with the default policy, which a new namespace
        already has)."""
        return await self.enforce_on(machine.id, machine.instance_id, machine.provider,
                                     at_start=at_start)  # fmt: skip

    async def enforce_on(
        self, machine_id: str, instance_id: str, provider_name: str, *, at_start: bool = False
    ) -> bool:
        policy = await instance_egress(self.store, instance_id)
        if at_start and policy.is_open():
            return False
        provider = self.providers.get(provider_name)
        if not isinstance(provider, NetnsHolder):
            raise NotSupported(f"provider {provider_name!r} cannot enforce an egress policy")
        pid = await provider.netns_pid(machine_id)
        if pid is None:
            return False
        script = egress.ruleset(policy, await self.platform())
        await egress.apply(pid, script, machine_id)
        log.info("egress.applied", machine_id=machine_id, default=policy.default,
                 allow=len(policy.allow), deny=len(policy.deny))  # fmt: skip
        return True
