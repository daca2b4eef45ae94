"""A stream's setup rides out a JetStream that does not answer yet (controlplane/bus.py
put_stream): a cluster that has just started elects its meta leader before it makes a stream,
and a service that gave up on the first timeout crashed there (the HA chaos test's gateway,
whose `fleet up` then ended). In memory, a JetStream API that fails as a cluster's does; on
real servers: tests/integration/test_stream_limits.py, tests/e2e/test_chaos_ha.py."""

from __future__ import annotations

import asyncio

import nats.errors
import nats.js.errors
import pytest
from nats.js.api import ConsumerConfig, StreamConfig

from contracts.bus.events import MachineCreated
from controlplane.bus import PlacementPending, bind_pull, put_stream
from controlplane.events.consumer import Consumer

CONFIG = StreamConfig(name="events", subjects=["machine.>"])


class ClusterStarting:
    """A JetStream API that answers nothing ``silent`` times, then 503 once, then serves."""

    def __init__(self, silent: int) -> None:
        self.failures: list[BaseException] = [nats.errors.TimeoutError()] * silent + [
            nats.js.errors.ServiceUnavailableError()
        ]
        self.streams: dict[str, StreamConfig] = {}
        self.calls: list[str] = []

    def _maybe_fail(self, call: str) -> None:
        self.calls.append(call)
        if self.failures:
            raise self.failures.pop(0)

    async def stream_info(self, name: str) -> StreamConfig:
        self._maybe_fail("info")
        if name not in self.streams:
            raise nats.js.errors.NotFoundError()
        return self.streams[name]

    async def add_stream(self, config: StreamConfig) -> None:
        self._maybe_fail("add")
        assert config.name is not None
        self.streams[config.name] = config

    async def update_stream(self, config: StreamConfig) -> None:
        self._maybe_fail("update")
        assert config.name is not None
        self.streams[config.name] = config


async def test_a_stream_is_made_once_the_cluster_answers() -> None:
    js = ClusterStarting(silent=2)
    await put_stream(js, CONFIG)  # type: ignore[arg-type]
    assert js.streams == {"events": CONFIG}
    assert js.calls.count("info") >= 3  # each try asks again what is there


async def test_an_error_that_is_not_a_cluster_starting_is_raised_at_once() -> None:
    class Refusing(ClusterStarting):
        async def add_stream(self, config: StreamConfig) -> None:
            self.calls.append("add")
            raise nats.js.errors.BadRequestError()

    js = Refusing(silent=0)
    js.failures = []
    with pytest.raises(nats.js.errors.BadRequestError):
        await put_stream(js, CONFIG)  # type: ignore[arg-type]
    assert js.calls.count("add") == 1


class BindingOnAStartingCluster:
    """A bus whose JetStream answers a consumer's setup nothing ``silent`` times, then binds
    it (its pull subscription: a stand-in that fetches nothing)."""

    def __init__(self, silent: int) -> None:
        self.js = self.nc = self
        self.failures: list[BaseException] = [nats.errors.TimeoutError()] * silent
        self.calls: list[str] = []

    async def flush(self, timeout: float) -> None:
        return None

    async def add_consumer(self, stream: str, config: ConsumerConfig) -> None:
        self.calls.append("add")
        if self.failures:
            raise self.failures.pop(0)

    async def pull_subscribe(self, *_: object, **__: object) -> object:
        self.calls.append("subscribe")
        return Idle()


class Idle:
    """A pull subscription that has nothing, whenever it is asked."""

    async def fetch(self, *_: object, **__: object) -> list[object]:
        await asyncio.sleep(0.01)
        raise nats.errors.TimeoutError

    async def unsubscribe(self) -> None:
        return None


async def test_a_consumer_is_bound_once_the_cluster_answers() -> None:
    """The same for a service's consumers (the HA chaos test's setup pusher crashed at its
    start on a consumer's first timeout, and its `fleet up` ended)."""
    bus = BindingOnAStartingCluster(silent=2)

    async def handle(_: MachineCreated) -> None:
        return None

    async def give_up(_: MachineCreated, __: str) -> None:
        return None

    consumer = Consumer(bus, durable="test", event_type=MachineCreated,  # type: ignore[arg-type]
                        handler=handle, give_up=give_up)  # fmt: skip
    async with consumer:
        assert bus.calls == ["add", "add", "add", "subscribe"]


async def test_a_pull_consumer_of_its_own_is_bound_once_the_cluster_answers() -> None:
    """`bind_pull`, the step every durable pull consumer binds through (the services'
    consumers, the webhooks fanout's)."""
    bus = BindingOnAStartingCluster(silent=2)
    config = ConsumerConfig(durable_name="webhooks", filter_subject="machines.>")
    await bind_pull(bus.js, config)  # type: ignore[arg-type]
    assert bus.calls == ["add", "add", "add", "subscribe"]


def _no_peers(reason: str) -> nats.js.errors.APIError:
    """What a cluster's meta leader answers a stream no peer can hold (10005)."""
    return nats.js.errors.BadRequestError(
        code=400, err_code=10005, description=f"no suitable peers for placement, {reason}"
    )


class PlacingLate(ClusterStarting):
    """A cluster that has just formed: its meta leader knows no peer's storage yet, so it
    refuses a replicated stream ``refusals`` times, then makes it."""

    def __init__(self, refusals: int) -> None:
        super().__init__(silent=0)
        self.failures = []
        self.refusals = refusals

    async def add_stream(self, config: StreamConfig) -> None:
        self.calls.append("add")
        if self.refusals:
            self.refusals -= 1
            raise _no_peers("insufficient storage")
        assert config.name is not None
        self.streams[config.name] = config


async def test_a_stream_no_peer_can_place_yet_is_made_once_the_peers_report() -> None:
    """The HA chaos test's gateway stopped at its start: its audit stream (R3) was refused
    10005 "insufficient storage" before the peers' first statistics had reached the leader."""
    js = PlacingLate(refusals=2)
    await put_stream(js, CONFIG)  # type: ignore[arg-type]
    assert js.streams == {"events": CONFIG}
    assert js.calls.count("add") == 3


async def test_a_stream_no_peer_can_ever_place_stops_with_the_reason_and_the_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("controlplane.bus._SETUP_BUDGET_S", 0.3)
    js = PlacingLate(refusals=10**6)
    with pytest.raises(PlacementPending) as stopped:
        await put_stream(js, CONFIG)  # type: ignore[arg-type]
    assert "stream events (no suitable peers for placement, insufficient storage)" in str(
        stopped.value
    )
    assert "FLEET_STREAM_MAX_BYTES" in str(stopped.value)
    assert js.streams == {}
    assert js.calls.count("add") >= 2


def test_a_placement_refused_for_another_reason_carries_no_storage_hint() -> None:
    pending = PlacementPending("events", _no_peers("peers offline"))
    assert (
        str(pending) == "no JetStream peer can place stream events (no suitable peers "
        "for placement, peers offline)"
    )
