"""python -m services.prober"""

from __future__ import annotations

from contextlib import AsyncExitStack

from contracts.subjects import EventKind
from services.common.consumer import stage_consumer
from services.common.runner import run_service
from services.common.settings import Settings
from services.common.stage import connect
from services.prober.liveness import HeartbeatMonitor
from services.prober.service import Prober


async def build(settings: Settings, stack: AsyncExitStack) -> None:
    store, bus = await connect(settings, stack, "prober")
    await stack.enter_async_context(HeartbeatMonitor(store=store, bus=bus, settings=settings))
    svc = Prober.wired(settings, store, bus)
    await stack.enter_async_context(
        stage_consumer(
            bus,
            settings,
            durable="prober-boot",
            kind=EventKind.PROVISIONED,
            handler=svc.on_provisioned,
            give_up=svc.give_up_boot,
            retry_budget_s=settings.boot_timeout_s + 60,
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
        )
    )


def main() -> None:
    run_service("prober", build)


if __name__ == "__main__":
    main()
