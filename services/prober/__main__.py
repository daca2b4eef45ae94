"""python -m services.prober"""

from __future__ import annotations

from contextlib import AsyncExitStack

from contracts.subjects import EventKind
from services.common.consumer import stage_consumer
from services.common.metrics import service_metrics
from services.common.runner import run_service
from services.common.settings import Settings
from services.common.stage import connect
from services.prober.liveness import HeartbeatMonitor
from services.prober.service import Prober


async def build(settings: Settings, stack: AsyncExitStack) -> None:
    store, bus = await connect(settings, stack, "prober")
    metrics = await service_metrics(settings, stack)
    await stack.enter_async_context(HeartbeatMonitor(store=store, bus=bus, settings=settings))
    svc = Prober.wired(settings, store, bus, metrics)
    await stack.enter_async_context(
        stage_consumer(
            bus,
            settings,
            durable="prober-boot",
            kind=EventKind.PROVISIONED,
            handler=svc.on_provisioned,
            give_up=svc.give_up_boot,
            retry_budget_s=settings.boot_timeout_s + 60,
            metrics=metrics,
        )
    )
    await stack.enter_async_context(
        stage_consumer(
            bus,
            settings,
            durable="prober",
            kind=EventKind.SETUP_PUSHED,
            handler=svc.on_setup_pushed,
            give_up=svc.give_up,
            metrics=metrics,
        )
    )


def main() -> None:
    run_service("prober", build)


if __name__ == "__main__":
    main()
