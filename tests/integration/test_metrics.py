"""Prometheus metrics, scraped over HTTP from real processes' endpoints and parsed as Prometheus
parses them: stage consumers, daemon RPC latency, machines by status on the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import aiohttp
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts.bus import subjects
from contracts.bus.events import DaemonStatusReported, Event, MachineCreated
from contracts.bus.subjects import EventKind
from contracts.daemon.rpc import EXEC_COMMAND, HEALTH
from contracts.errors import DaemonUnavailable
from contracts.ids import new_event_id, new_machine_id
from contracts.rpc.jsonrpc import NoParams
from contracts.status import MachineStatus
from controlplane.bus import Bus
from controlplane.calls.daemon_client import DaemonClient, static_key
from controlplane.events.consumer import Consumer, Permanent
from controlplane.process.metrics import Metrics, MetricsServer
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.up.embedded import PortHold
from tests.conftest import MACHINE_TOKEN, SpawnDaemon
from tests.waiters import subscribed, wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str) -> tuple[int, str, Samples]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        text, status = await r.text(), r.status
        assert r.headers["Content-Type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return status, text, samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


@pytest.fixture
async def served(bus: Bus) -> AsyncIterator[tuple[Metrics, str]]:
    """A process's Metrics on its own metrics port, as a service without HTTP serves it."""
    metrics = Metrics(process=True)
    async with MetricsServer(metrics, "127.0.0.1", 0) as server:  # a port the kernel gives
        yield metrics, f"http://127.0.0.1:{server.port}/metrics"


def created(machine_id: str) -> MachineCreated:
    return MachineCreated(
        event_id=new_event_id(), machine_id=machine_id, instance_id="i-0", provider="local"
    )


async def test_stage_consumer_counts_and_times_each_event(
    bus: Bus, served: tuple[Metrics, str]
) -> None:
    metrics, url = served
    doomed = new_machine_id()
    gave_up: list[str] = []

    async def handle(event: Event) -> None:
        if event.machine_id == doomed:
            raise Permanent("no such provider")

    async def give_up(event: Event, reason: str) -> None:
        gave_up.append(reason)

    consumer = Consumer(
        bus, durable="metrics-test", event_type=MachineCreated, handler=handle, give_up=give_up,
        ack_wait_s=5.0, metrics=metrics,
    )  # fmt: skip
    async with consumer:
        for mid in (new_machine_id(), new_machine_id(), doomed):
            await bus.publish(created(mid))

        async def all_counted() -> bool:
            _, _, samples = await scrape(url)
            return value(samples, "fleet_stage_seconds_count", stage="metrics-test") == 3

        await wait_until(all_counted)
    _, text, samples = await scrape(url)
    stage = "metrics-test"
    assert value(samples, "fleet_events_handled_total", stage=stage, outcome="ok") == 2
    assert value(samples, "fleet_events_handled_total", stage=stage, outcome="gave_up") == 1
    assert gave_up == ["no such provider"]
    assert value(samples, "fleet_stage_seconds_bucket", stage=stage, le="+Inf") == 3
    assert (value(samples, "fleet_stage_seconds_sum", stage=stage) or 0) > 0
    assert "process_resident_memory_bytes" in text  # a service's endpoint says how it is doing


async def test_daemon_rpc_latency_by_method_and_outcome(
    bus: Bus, spawn_daemon: SpawnDaemon, served: tuple[Metrics, str]
) -> None:
    metrics, url = served
    daemons = DaemonClient(bus.nc, keys=static_key(MACHINE_TOKEN), timeout_s=5, metrics=metrics)
    mid = new_machine_id()
    with pytest.raises(DaemonUnavailable):  # nothing serves it yet
        await daemons.machine(mid).health()
    status = subjects.event(EventKind.DAEMON_STATUS_REPORTED, mid)
    async with subscribed(bus.nc, status) as inbox:
        spawn_daemon(mid)
        report = await inbox.next_event(timeout=15)
    assert isinstance(report, DaemonStatusReported)
    assert (await daemons.machine(mid).health()).ok
    assert (await daemons.call(mid, HEALTH, NoParams())).ok

    _, _, samples = await scrape(url)
    name, method = "fleet_daemon_rpc_seconds_count", HEALTH.name
    assert value(samples, name, method=method, outcome="ok") == 2
    assert value(samples, name, method=method, outcome="DaemonUnavailable") == 1
    assert value(samples, "fleet_daemon_rpc_seconds_bucket", method=method, outcome="ok",
                 le="+Inf") == 2  # fmt: skip


async def test_gateway_metrics_counts_machines_by_status(settings: Settings, store: Store) -> None:
    from services.gateway.__main__ import build

    inst = await store.create_instance("metrics")
    ids = [(await store.create_machine(inst.id, "local")).id for _ in range(3)]
    await store.transition(ids[0], MachineStatus.PROVISIONING, "starting")
    await store.transition(ids[1], MachineStatus.FAILED, "provision failed: test")
    base = f"http://127.0.0.1:{settings.port}"
    async with AsyncExitStack() as stack:
        await build(settings, stack)
        status, _, samples = await scrape(base + "/metrics")  # no token: like /healthz
        assert status == 200
        counts = {s.value: value(samples, "fleet_machines", status=s.value) for s in MachineStatus}
        assert counts == {s.value: 0 for s in MachineStatus} | {
            "created": 1, "provisioning": 1, "failed": 1
        }  # fmt: skip
        # Counted at scrape time: the next scrape sees the change.
        await store.transition(ids[2], MachineStatus.FAILED, "provision failed: test")
        _, _, samples = await scrape(base + "/metrics")
        assert value(samples, "fleet_machines", status="failed") == 2
        assert value(samples, "fleet_machines", status="created") == 0
        call = b'{"jsonrpc":"2.0","id":1,"method":"machines.list"}'
        async with aiohttp.ClientSession() as s, s.post(base + "/rpc", data=call) as r:
            assert r.status == 401  # the API itself still wants a token


async def test_a_service_serves_its_metrics_port(settings: Settings) -> None:
    from services.prober.__main__ import build

    async with AsyncExitStack() as stack:
        # Named before the service starts, as `fleet up` names it: held (`PortHold`).
        port = stack.enter_context(PortHold()).port
        await build(msgspec.structs.replace(settings, metrics_port=port), stack)
        status, text, samples = await scrape(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    families = {f.name for f in text_string_to_metric_families(text)}
    assert {"fleet_events_handled", "fleet_stage_seconds", "fleet_daemon_rpc_seconds"} <= families
    # The methods the prober calls are there at 0 before its first call.
    for method in (HEALTH.name, EXEC_COMMAND.name):
        for outcome in ("ok", "DaemonUnavailable", "DaemonTimeout", "error"):
            assert value(samples, "fleet_daemon_rpc_seconds_count", method=method,
                         outcome=outcome) == 0, (method, outcome)  # fmt: skip
    # Machines are counted by the gateway only, so that a sum over targets counts each once.
    assert not [name for name, _ in samples if name == "fleet_machines"]
