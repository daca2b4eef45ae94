"""python -m services.setup_pusher"""

from __future__ import annotations

from contextlib import AsyncExitStack

from contracts.subjects import EventKind
from services.common.consumer import stage_consumer
from services.common.metrics import service_metrics
from services.common.runner import run_service
from services.common.settings import Settings
from services.common.stage import connect
from services.setup_pusher.service import SetupPusher


async def build(settings: Settings, stack: AsyncExitStack) -> None:
    store, bus = await connect(settings, stack, "setup_pusher")
    metrics = await service_metrics(settings, stack)
    svc = SetupPusher.wired(settings, store, bus, metrics)
    await stack.enter_async_context(
        stage_consumer(
            bus,
            settings,
            durable="setup_pusher",
            kind=EventKind.DAEMON_STATUS_REPORTED,
            handler=svc.on_status,
            give_up=svc.give_up,
            # A ready report may wait on a provisioner that is restarting: as long as a machine
            # may take to boot at all.
            retry_budget_s=settings.boot_timeout_s,
            metrics=metrics,
        )
    )


def main() -> None:
    run_service("setup_pusher", build)


if __name__ == "__main__":
    main()
