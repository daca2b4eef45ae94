"""The docker engine's networks, kept as the platform's (providers/egress/addresses.py): listed
when the provisioner starts, and again whenever the engine says a network was created or
removed (its events), or its events are followed again after a loss. A machine's request
through the egress proxy to an address of any of them is refused as one to the host is."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import Callable
from types import TracebackType

import aiodocker
import aiohttp
import structlog

from base.retry import Backoff, Retries
from base.tasks import cancel_and_join
from contracts.errors import ProviderError
from providers.egress import Network, PlatformAddresses

log = structlog.get_logger(__name__)
_FIRST_LIST_S = 15.0
_LOST = (aiodocker.DockerError, aiohttp.ClientError, ProviderError, OSError, TimeoutError)


def subnets(networks: list[dict[str, object]]) -> list[Network]:
    """Every subnet of the engine's ``networks`` (their IPAM configs)."""
    out: list[Network] = []
    for net in networks:
        ipam = net.get("IPAM")
        configs = ipam.get("Config") if isinstance(ipam, dict) else None
        for config in configs if isinstance(configs, list) else []:
            subnet = config.get("Subnet") if isinstance(config, dict) else None
            if isinstance(subnet, str):
                try:
                    out.append(ipaddress.ip_network(subnet, strict=False))
                except ValueError:
                    continue
    return out


class DockerNetworks:
    """``platform``'s networks kept the engine's (an async context manager)."""

    def __init__(self, docker: Callable[[], aiodocker.Docker], platform: PlatformAddresses) -> None:
        self._docker = docker
        self._platform = platform
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> DockerNetworks:
        try:
            async with asyncio.timeout(_FIRST_LIST_S):
                await self.refresh()
        except _LOST as exc:  # no engine yet: the watch lists them once it answers
            log.info("egress.docker_networks_unknown", error=str(exc)[:200])
        self._task = asyncio.create_task(self._watch(), name="docker-networks")
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await cancel_and_join(self._task)

    async def refresh(self) -> None:
        networks = await self._docker().networks.list()
        self._platform.networks_are(subnets(networks))

    async def _watch(self) -> None:
        retries = Retries(Backoff(1.0, 30.0))
        while True:
            try:
                await self._follow()
                retries = Retries(Backoff(1.0, 30.0))  # the stream ended after it was up
            except _LOST as exc:  # said once a loss, not at every try (a host with no engine)
                say = log.info if retries.failed == 0 else log.debug
                say("egress.docker_networks_lost", error=str(exc)[:200])
            await retries.pause()

    async def _follow(self) -> None:
        """Lists the networks once the engine's network events are followed (none missed in
        between), then again at each one that adds or removes a network."""
        docker = self._docker()
        # From a second before the list: the stream replays what happened while it connected.
        since = str(int(time.time()) - 1)
        events = docker.events.subscribe(  # type: ignore[no-untyped-call]
            filters=json.dumps({"type": ["network"]}), since=since
        )
        try:
            await self.refresh()
            while (event := await events.get()) is not None:
                if event.get("Action") in ("create", "destroy", "remove"):
                    await self.refresh()
        finally:
            await docker.events.stop()  # type: ignore[no-untyped-call]
