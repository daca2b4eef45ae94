"""The warm pool of the ``docker`` provider (``providers/warm_pool.py`` keeps it filled).

A pooled machine is a normal machine container (``DockerProvider.base_config``: the machine
image, the platform's limits, the machines' network, every restriction) started with a pool
slot instead of a machine: named ``fleet-pool-<slot>``, labelled ``fleet.pool=<slot>`` and
``fleet.pool.owner`` (this provisioner), its home the volume ``fleet-pool-<slot>-home``, its
environment ``FLEET_POOL_SLOT`` and ``FLEET_POOL_STDIN`` and **no machine id, no token, no
instance**, its stdin open (``OpenStdin``, ``StdinOnce``). Its supervisor starts the daemon,
which does its imports and waits; the supervisor then prints ``supervisor: pool_up`` (the
container's log: "verified") and reads its stdin (``daemon/pool.py``'s ``StdinChannel``). No
restart policy: a pooled container that dies is replaced, not restarted. A claim:

1. renames the container to ``fleet-<machineId>`` (labels cannot change after create: the name
   is the engine's record of the claim, and every path that finds a machine's container by
   name finds it) and writes its instance's limits and the machines' restart policy
   (``docker update``: live, the processes stay);
2. then, once the provisioner has announced the machine, attaches to the container's stdin and
   writes the identity (one JSON line, ``core/poolwire.py``); detaching closes that pipe for
   good. The supervisor reads it, prints ``supervisor: pool_claimed``, puts ``/dev/null`` on
   its fd 0 and hands the identity to the daemon, which connects as any machine's does. (No
   ``docker exec``: a new process in the container costs tens of milliseconds.)

The token is never in an argv, an environment, a file or a label of the container (``docker
inspect`` shows none of it). Unlike the local pool there is no lifeline: a provisioner that is
SIGKILLed leaves its pooled containers; the next one's start removes those of owners that are
gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiodocker
import aiohttp
import structlog
from aiodocker.multiplexed import multiplexed_result_stream

from contracts.errors import ProviderError
from core.poolwire import POOL_SLOT_VAR, POOL_STDIN_VAR, POOL_UP_LOG, identity_line
from providers.docker import (
    LABEL_POOL,
    LABEL_POOL_OWNER,
    LABEL_STACK,
    POOL_PREFIX,
    DockerProvider,
    container_name,
    ensure_network,
    remove_volume,
)
from providers.limits import Placement
from providers.local_pool import owner_alive, owner_name
from providers.warm_pool import PoolMachine

log = structlog.get_logger(__name__)


def pool_volume(slot: str) -> str:
    return f"{POOL_PREFIX}{slot}-home"


@contextlib.asynccontextmanager
async def _response(
    docker: aiodocker.Docker, path: str, method: str = "GET", **kw: Any
) -> AsyncIterator[aiohttp.ClientResponse]:
    """A long-running docker request (a followed log, a wait) whose response is closed when
    we stop reading or are cancelled. aiodocker's own ``log(follow=True)`` and ``wait()``
    leave it to be collected, an unclosed connection (CI's runs found one)."""
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None, connect=30)
    async with docker._query(path, method, timeout=timeout, **kw) as response:
        try:
            yield response
        finally:
            response.close()


class PooledDocker:
    """One pooled container, from its start to its claim (or its end)."""

    def __init__(self, backend: DockerPoolBackend, slot: str, c: Any) -> None:
        self._backend = backend
        self.slot = slot
        self.c = c
        self._machine_id = ""
        self._ended = False
        self._watch: asyncio.Task[None] | None = None

    def watch(self, on_death: Callable[[], None]) -> None:
        self._watch = asyncio.create_task(self._wait_end(on_death), name=f"pool:{self.slot}")

    async def _wait_end(self, on_death: Callable[[], None]) -> None:
        try:
            async with _response(self.c.docker, f"containers/{self.c.id}/wait", "POST") as r:
                await r.read()
        except (aiodocker.DockerError, aiohttp.ClientError) as exc:  # gone, or no engine
            log.warning("pool.docker_wait_failed", slot=self.slot, error=str(exc))
        self._ended = True
        on_death()

    def _unwatch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    @property
    def alive(self) -> bool:
        return not self._ended

    async def wait_up(self) -> None:
        seen = ""
        params = {"stdout": True, "stderr": True, "follow": True}
        async with _response(self.c.docker, f"containers/{self.c.id}/logs", params=params) as r:
            async for chunk in multiplexed_result_stream(r, is_tty=False):  # type: ignore[no-untyped-call]
                seen = (seen + chunk)[-4096:]
                if POOL_UP_LOG in seen:
                    return
        raise ProviderError(f"pooled container {self.slot} ended while starting")

    async def claim(self, machine_id: str) -> str:
        if not self.alive:
            raise ProviderError(f"pooled container {self.slot} has ended")
        # First: should it fail, the container is still the pool's (stopped with it).
        lim = (await self._backend.provider.placement_of(machine_id)).limits
        self._unwatch()
        self._backend.forget(self)  # the machine's now: the pool's close leaves it be
        self._machine_id = machine_id
        update = self._backend.provider.docker._query_json(
            f"containers/{self.c.id}/update", "POST", data={
                "Memory": lim.memory_mb * 1024 * 1024,
                "MemorySwap": lim.memory_mb * 1024 * 1024,
                "NanoCpus": int(lim.cpus * 1e9), "PidsLimit": lim.pids,
                "RestartPolicy": {"Name": "unless-stopped"},
            },
        )  # fmt: skip
        try:  # both at once: someone waits for this machine
            await asyncio.gather(self.c.rename(container_name(machine_id)), update)
        except (aiodocker.DockerError, aiohttp.ClientError) as exc:
            raise ProviderError(f"docker: claiming {self.slot}: {exc}") from None
        log.info("provider.docker_claimed", machine_id=machine_id, slot=self.slot)
        return f"docker:{self.c.id[:12]}"

    async def hand_over(self, token: str) -> None:
        """The identity on the container's stdin, attached once: when we detach, the pipe
        closes for good (``StdinOnce``), so nothing more can ever come that way."""
        try:
            async with self.c.attach(stdin=True) as stream:
                await stream.write_in(identity_line(self._machine_id, token))
        except (aiodocker.DockerError, aiohttp.ClientError, OSError) as exc:
            raise ProviderError(f"the claimed container went away: {exc}") from None

    async def stop(self) -> None:
        """Remove it for good, with its home volume (idempotent)."""
        self._unwatch()
        self._ended = True
        self._backend.forget(self)
        with contextlib.suppress(aiodocker.DockerError):
            await self.c.delete(force=True)
        with contextlib.suppress(ProviderError):
            await remove_volume(self._backend.provider.docker, pool_volume(self.slot))


class DockerPoolBackend:
    """Starts pooled containers for ``provider``."""

    name = "docker"

    def __init__(self, provider: DockerProvider) -> None:
        self.provider = provider
        self.owner = owner_name(os.getpid())
        self._machines: set[PooledDocker] = set()

    async def spawn(self, on_death: Callable[[], None]) -> PoolMachine:
        slot = f"p{secrets.token_hex(8)}"
        p = self.provider
        image = await p.image()
        p.check_nats_reachable(await ensure_network(p.docker, p.network))
        labels = {LABEL_POOL: slot, LABEL_POOL_OWNER: self.owner}
        env = {POOL_SLOT_VAR: slot, POOL_STDIN_VAR: "1"}
        place = Placement("", p.default_limits)
        config = p.base_config(image, f"fleet-{slot}", env, labels, pool_volume(slot), place)
        # A pooled container that dies is replaced, not restarted (a claim sets the policy).
        config["HostConfig"]["RestartPolicy"] = {"Name": "no"}
        config |= {"OpenStdin": True, "StdinOnce": True}  # the identity's way in, used once
        try:
            await p.docker.volumes.create(  # type: ignore[no-untyped-call]
                {"Name": pool_volume(slot), "Labels": {**labels, LABEL_STACK: p.stack}}
            )
            c = await p.docker.containers.create(config, name=f"{POOL_PREFIX}{slot}")
        except aiodocker.DockerError as exc:
            raise ProviderError(f"docker: cannot make a pooled container: {exc.message}") from None
        machine = PooledDocker(self, slot, c)
        self._machines.add(machine)
        try:
            await c.start()
        except aiodocker.DockerError as exc:
            await machine.stop()
            raise ProviderError(f"docker: cannot start {slot}: {exc.message}") from None
        machine.watch(on_death)
        log.info("provider.docker_pooled", slot=slot, container=c.id[:12])
        return machine

    def forget(self, machine: PooledDocker) -> None:
        self._machines.discard(machine)

    async def remove_orphans(self) -> int:
        """This stack's unclaimed pooled containers whose provisioner is gone, removed with
        their volumes (a claimed one is named for its machine: left be)."""
        try:
            found = await self.provider.docker.containers.list(all=True, filters={
                "label": [LABEL_POOL_OWNER, f"{LABEL_STACK}={self.provider.stack}"]
            })  # fmt: skip
        except (aiodocker.DockerError, aiohttp.ClientError, OSError) as exc:
            log.warning("pool.docker_unavailable", error=str(exc))  # spawns retry later
            return 0
        removed = 0
        for c in found:
            owner, slot = c["Labels"][LABEL_POOL_OWNER], c["Labels"][LABEL_POOL]
            unclaimed = str(c["Names"][0]).lstrip("/").startswith(POOL_PREFIX)
            if unclaimed and owner != self.owner and not owner_alive(owner):
                await PooledDocker(self, slot, c).stop()
                removed += 1
        return removed

    async def close(self) -> None:
        machines, self._machines = list(self._machines), set()
        await asyncio.gather(*(m.stop() for m in machines), return_exceptions=True)
