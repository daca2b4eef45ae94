"""The provisioner's use of its warm pools: a machine about to start gets a pooled one if
there is one (a create, a start of a stopped machine, a fork's first start), else a cold start.

A claimed machine is told who it is only after ``machine.provisioned`` is out (``hand_over``):
its daemon's ready report must come after it, as a cold machine's does.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from contracts.errors import ProviderError
from controlplane.settings import GVISOR_POOL
from controlplane.store import Store
from environments.lifecycle_commands import MachineLifecycle
from providers.base import Provider
from providers.warm_pool import PoolMachine, WarmPool
from services.provisioner.builds.environment import pool_key

log = structlog.get_logger(__name__)


async def machine_pool(
    store: Store, machine_id: str, provider: str, image: str | None
) -> str | None:
    """The warm pool a machine may come from (its provider's, of its image, of its runtime:
    a pooled machine is never handed out as another runtime's); None for a machine with a
    user of its own (a devcontainer's remoteUser): a pooled one runs as the provider's default
    user."""
    runtime = (await store.get_machine(machine_id)).runtime
    life = await store.lifecycles.load(machine_id, MachineLifecycle)
    if life is not None and life.user is not None:
        return None
    if runtime == "gvisor":  # the local provider's gvisor sandboxes (no image of their own)
        return GVISOR_POOL if provider == "local" and image is None else None
    return pool_key(provider, image) if runtime == "namespaces" else None


class PoolClaims:
    """This process's warm pools, by pool key (claims are local to the process): what a
    create, a start and a fork's first start take a machine from."""

    def __init__(self, store: Store, pools: Mapping[str, WarmPool]) -> None:
        self.store = store
        self.pools = dict(pools)

    async def obtain(
        self, name: str | None, provider: Provider, machine_id: str, token: str, *,
        home_kept: bool = False,
    ) -> tuple[str, PoolMachine | None]:  # fmt: skip
        """A machine from the warm pool ``name`` if it has one (claimed, not yet told who it
        is; ``home_kept``: given the home the machine has already), else a cold start; its
        external id. ``name`` None: never from a pool."""
        pool = self.pools.get(name) if name is not None else None
        pooled = pool.take(home_kept=home_kept) if pool is not None else None
        if pooled is not None:
            try:
                return await pooled.claim(machine_id, home_kept=home_kept), pooled
            except (ProviderError, OSError) as exc:
                log.warning("provision.pool_claim_failed", slot=pooled.slot, error=str(exc),
                            home_kept=home_kept)  # fmt: skip
                await pooled.stop()
        return await provider.start(machine_id, token), None

    async def hand_over(
        self, pooled: PoolMachine, provider: Provider, machine_id: str, token: str
    ) -> None:
        """Tell a claimed machine who it is; one that died since its claim starts cold."""
        try:
            await pooled.hand_over(token)
        except ProviderError as exc:  # it died since its claim: start the machine cold
            log.warning("provision.pool_handover_failed", slot=pooled.slot, error=str(exc))
            external_id = await provider.start(machine_id, token)
            await self.store.set_external_id(machine_id, external_id)
