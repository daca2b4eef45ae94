"""python -m services.prober"""

from __future__ import annotations

from contextlib import AsyncExitStack

from base.clock import SYSTEM_CLOCK
from controlplane.calls.host_call import HostLiveness
from controlplane.events.subscriptions import enter_subscriptions
from controlplane.process.metrics import service_metrics
from controlplane.process.runner import run_service
from controlplane.process.stage import connect, wired_daemons
from controlplane.settings import Settings
from services.prober.autostop import IdleStopper
from services.prober.host_loss import HostLossMonitor
from services.prober.liveness import HeartbeatMonitor
from services.prober.service import ReadinessProbe, prober


async def build(settings: Settings, stack: AsyncExitStack) -> None:
    store, bus = await connect(settings, stack, "prober")
    metrics = await service_metrics(settings, stack)
    # The one clock of this process's time-dependent rules (tests pass a manual one).
    clock = SYSTEM_CLOCK
    for part in (
        HeartbeatMonitor(store=store, bus=bus, settings=settings, clock=clock),
        IdleStopper(store=store, bus=bus, settings=settings, clock=clock),
        HostLossMonitor(store=store, bus=bus, settings=settings, clock=clock),
    ):
        await stack.enter_async_context(part)
    # Its boot watchdog asks a machine's host whether its daemon runs, as the gateway asks
    # hosts (one provisioner of the host answers).
    hosts = HostLiveness(bus.nc, default_host_id=settings.host_id,
                         timeout_s=settings.rpc_timeout_s)  # fmt: skip
    keys, daemons = wired_daemons(settings, store, bus, metrics, ReadinessProbe.daemon_methods)
    svc = prober(store=store, bus=bus, daemons=daemons, settings=settings, keys=keys,
                 clock=clock, hosts=hosts)  # fmt: skip
    await enter_subscriptions(stack, svc.handlers, bus, settings, metrics)


def main() -> None:
    run_service("prober", build)


if __name__ == "__main__":
    main()
