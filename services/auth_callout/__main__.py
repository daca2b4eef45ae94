"""python -m services.auth_callout

Connects as the callout account's user (``FLEET_NATS_USER``/``FLEET_NATS_PASSWORD``) and answers
the server's authorization requests, signing with ``FLEET_CALLOUT_ISSUER_SEED``. Start it before
the machines: until it answers, every machine's CONNECT is refused (they retry).
"""

from __future__ import annotations

from contextlib import AsyncExitStack

import nats.errors
import structlog

from controlplane.bus import connect_nats
from controlplane.process.metrics import service_metrics
from controlplane.process.runner import run_service
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings, SettingsError
from controlplane.store import Store
from services.auth_callout.jwt import Issuer
from services.auth_callout.service import AuthCallout

log = structlog.get_logger(__name__)


async def build(settings: Settings, stack: AsyncExitStack) -> None:
    if not settings.callout_issuer_seed:
        raise SettingsError("FLEET_CALLOUT_ISSUER_SEED: required by the auth callout")
    issuer = Issuer(settings.callout_issuer_seed)
    store = await stack.enter_async_context(Store.of(settings))
    # Its own series (callouts, refusals by reason, latency) and the process's.
    metrics = await service_metrics(settings, stack)
    nc = await connect_nats(settings, name="auth_callout")

    async def close() -> None:
        try:
            await nc.drain()
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("callout.drain_failed", error=str(exc))
            await nc.close()

    stack.push_async_callback(close)
    svc = AuthCallout(
        store=store,
        box=SecretBox(settings.secret_key),
        issuer=issuer,
        account=settings.callout_account,
        max_payload=settings.machine_max_payload,
        metrics=metrics,
    )
    await stack.enter_async_context(svc.serving(nc))


def main() -> None:
    run_service("auth_callout", build)


if __name__ == "__main__":
    main()
