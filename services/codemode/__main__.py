"""python -m services.codemode"""

from __future__ import annotations

from contextlib import AsyncExitStack

from controlplane.process.metrics import service_metrics
from controlplane.process.runner import run_service
from controlplane.process.stage import connect
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from services.codemode.service import CodemodeService


async def build(settings: Settings, stack: AsyncExitStack) -> None:
    store, bus = await connect(settings, stack, "codemode")
    # The process's own series on the port `fleet up` gives every service (no run metrics yet).
    await service_metrics(settings, stack)
    service = CodemodeService(bus.nc, store, SecretBox(settings.secret_key), settings)
    await stack.enter_async_context(service)


def main() -> None:
    run_service("codemode", build)


if __name__ == "__main__":
    main()
