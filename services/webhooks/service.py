"""The webhooks service: the fan-out (one process at a time queues the stream's events for the
endpoints they go to) and the deliveries (every process POSTs the queues it holds), built once
in ``__main__`` and entered into its exit stack (docs/webhooks.md)."""

from __future__ import annotations

from contextlib import AsyncExitStack

from controlplane.bus import Bus
from controlplane.host_addresses import platform_rules
from controlplane.policy import NameLookups
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import Store
from services.webhooks.deliver import Deliveries
from services.webhooks.fanout import Fanout


async def enter_webhooks(
    stack: AsyncExitStack, settings: Settings, store: Store, bus: Bus
) -> Deliveries:
    """Start the deliveries, then the fan-out (stopped in reverse: no new queue is claimed
    while the tasks drain)."""
    rules = await platform_rules(settings)
    lookups = await stack.enter_async_context(NameLookups())
    await store.webhooks.record_scopes()  # endpoints made before scopes were recorded
    deliveries = await stack.enter_async_context(
        Deliveries(store, settings, SecretBox(settings.secret_key), rules, lookups)
    )
    await stack.enter_async_context(Fanout(store, bus, settings, deliveries))
    return deliveries
