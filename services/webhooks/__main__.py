"""python -m services.webhooks"""

from __future__ import annotations

from contextlib import AsyncExitStack

from controlplane.process.metrics import service_metrics
from controlplane.process.runner import run_service
from controlplane.process.stage import connect
from controlplane.settings import Settings
from services.webhooks.service import enter_webhooks


async def build(settings: Settings, stack: AsyncExitStack) -> None:
    store, bus = await connect(settings, stack, "webhooks")
    await service_metrics(settings, stack)  # /metrics: the process's own
    await enter_webhooks(stack, settings, store, bus)


def main() -> None:
    run_service("webhooks", build)


if __name__ == "__main__":
    main()
