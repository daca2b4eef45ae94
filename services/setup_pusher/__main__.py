"""python -m services.setup_pusher"""

from __future__ import annotations

from contextlib import AsyncExitStack

from controlplane.events.subscriptions import enter_subscriptions
from controlplane.process.metrics import service_metrics
from controlplane.process.runner import run_service
from controlplane.process.stage import connect, wired_daemons
from controlplane.settings import Settings
from services.setup_pusher.service import SetupPusher, setup_pusher


async def build(settings: Settings, stack: AsyncExitStack) -> None:
    store, bus = await connect(settings, stack, "setup_pusher")
    metrics = await service_metrics(settings, stack)
    keys, daemons = wired_daemons(settings, store, bus, metrics, SetupPusher.daemon_methods)
    svc = setup_pusher(store=store, bus=bus, daemons=daemons, settings=settings, keys=keys)
    await enter_subscriptions(stack, svc.handlers, bus, settings, metrics)


def main() -> None:
    run_service("setup_pusher", build)


if __name__ == "__main__":
    main()
