"""The docker warm pool when its connection to the engine drops: a real engine reached as a
remote one, through a TCP proxy the test controls (``tests/docker_proxy.py``), as a
provisioner with ``DOCKER_HOST=tcp://...`` reaches it. The proxy cuts every open connection
(an engine restart, a network blip, a proxy's timeout) or stops listening for a while (the
engine unreachable). What the test itself looks at goes to the engine directly, never through
the proxy."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Set
from pathlib import Path
from typing import Any

import aiodocker
import pytest

from base.poolwire import POOL_CLAIMED_LOG, POOL_ORPHANED_LOG, POOL_UP_LOG
from contracts.errors import ProviderError
from contracts.ids import new_machine_id
from controlplane.settings import Settings
from providers import warm_pool
from providers.docker import POOL_PREFIX, container_name, pool as docker_pool
from providers.docker.pool import DockerPoolBackend, pool_volume
from providers.registry import docker_provider
from providers.warm_pool import WarmPool
from tests.docker_env import (
    docker_gateway,
    docker_image,
    docker_json,
    inspect,
    nats_server,
    remove_containers,
)
from tests.docker_proxy import EngineProxy
from tests.integration.test_docker_pool_lifeline import container, ended, logs, volume_exists
from tests.waiters import wait_until

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")

TOKEN = "t0ken-" + "x" * 40


class Recorder:
    """A module's structlog logger, recorded on the way through (the pool's own events)."""

    def __init__(self, inner: Any, seen: list[tuple[str, str, dict[str, Any]]]) -> None:
        self._inner, self._seen = inner, seen

    def __getattr__(self, level: str) -> Callable[..., None]:
        def emit(event: str, **kw: Any) -> None:
            self._seen.append((level, event, kw))
            getattr(self._inner, level)(event, **kw)

        return emit


@pytest.fixture
def pool_log(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, dict[str, Any]]]:
    seen: list[tuple[str, str, dict[str, Any]]] = []
    for module in (docker_pool, warm_pool):
        monkeypatch.setattr(module, "log", Recorder(module.log, seen))
    return seen


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What reaches the event loop's exception handler (a task's exception nobody took)."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield errors
    loop.set_exception_handler(previous)


@pytest.fixture
async def proxy() -> AsyncIterator[EngineProxy]:
    async with EngineProxy() as p:
        yield p


def events(seen: list[tuple[str, str, dict[str, Any]]], name: str) -> list[dict[str, Any]]:
    return [kw for _, event, kw in seen if event == name]


def failures(seen: list[tuple[str, str, dict[str, Any]]]) -> list[tuple[str, str]]:
    """Errors and exceptions the pool logged (a keeper's round that failed, say)."""
    return [(lvl, ev) for lvl, ev, _ in seen if lvl in ("error", "exception", "critical")]


async def filled_with(pool: WarmPool, size: int, besides: Set[str] = frozenset()) -> set[str]:
    """Until ``size`` live pooled machines are ready, none of them one of ``besides``."""

    def fresh() -> set[str]:
        return {m.slot for m in pool.ready if m.alive and m.slot not in besides}

    await wait_until(lambda: len(fresh()) >= size, timeout=60, every=0.05)
    return fresh()


async def whole_log(name: str, started: asyncio.Event) -> str:
    """A container's log from its start until it stops, followed on the engine directly."""
    async with aiodocker.Docker() as docker:
        c = await docker.containers.get(name)
        seen = ""
        async for chunk in c.log(stdout=True, stderr=True, follow=True):
            seen += chunk
            if POOL_UP_LOG in seen:
                started.set()  # following: whatever comes next is ours to see
        return seen


async def following(names: list[str]) -> list[asyncio.Task[str]]:
    tasks = []
    for name in names:
        started = asyncio.Event()
        tasks.append(asyncio.create_task(whole_log(name, started)))
        async with asyncio.timeout(15):
            await started.wait()
    return tasks


async def gone_with_volumes(slots: set[str]) -> bool:
    for slot in slots:
        if await container(f"{POOL_PREFIX}{slot}") or await volume_exists(pool_volume(slot)):
            return False
    return True


async def handed_over(pool: WarmPool) -> str:
    """A machine claimed from the pool and given its identity: no longer on the lifeline."""
    machine = pool.take()
    assert machine is not None
    mid = new_machine_id()
    await machine.claim(mid)
    await machine.hand_over(TOKEN)

    async def claimed() -> bool:
        return POOL_CLAIMED_LOG in await logs(container_name(mid))

    await wait_until(claimed, timeout=15, every=0.05)
    return mid


async def engine_events(since: int, ids: set[str]) -> list[tuple[str, str]]:
    """(container id, action) of what the engine did to these containers since then, in order
    (``until`` now: the engine answers its past, no stream)."""
    params = {"since": str(since), "until": str(int(time.time()) + 1),
              "filters": json.dumps({"type": ["container"]})}  # fmt: skip
    async with aiodocker.Docker() as docker, docker._query("events", params=params) as r:
        lines = (await r.text()).splitlines()
    found = [json.loads(line) for line in lines if line.strip()]
    return [(e["id"], e["Action"]) for e in found if e.get("id") in ids]


def leaked() -> list[str]:
    """The pool's tasks (its keeper, its containers' watches) still there after its exit."""
    return [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("pool:")]


async def untouched(mid: str) -> None:
    info = await inspect(mid)
    assert info["State"]["Running"], info["State"]
    assert info["RestartCount"] == 0
    assert POOL_ORPHANED_LOG not in await logs(container_name(mid))


async def test_a_cut_engine_connection_ends_the_pool_by_itself_and_it_refills(
    settings: Settings,
    proxy: EngineProxy,
    pool_log: list[tuple[str, str, dict[str, Any]]],
    loop_errors: list[dict[str, Any]],
) -> None:
    """The operator's worry with a remote engine: every connection of the provisioner to it
    is cut (the engine answers again at once). The unclaimed pooled containers lose their
    lifeline and end by themselves (their supervisor says so); the pool sees it, removes them
    with their volumes and refills with new ones; a machine handed over before the cut lives
    on; nothing in the pool failed unhandled."""
    async with (
        docker_provider(settings, Path.cwd(), engine_url=proxy.url) as provider,
        WarmPool(DockerPoolBackend(provider), 2, min_available_mb=0, refill_delay_s=0) as pool,
    ):
        await filled_with(pool, 2)
        mid = await handed_over(pool)
        old = await filled_with(pool, 2)
        followers = await following([f"{POOL_PREFIX}{slot}" for slot in old])
        ids = {(await container(f"{POOL_PREFIX}{slot}"))["Id"] for slot in old}
        since = int(time.time()) - 1

        assert proxy.cut() >= 2 * len(old)  # each: its attach and its wait, at least
        async with asyncio.timeout(20):
            said = await asyncio.gather(*followers)
        assert all(POOL_ORPHANED_LOG in text for text in said), said  # ended by themselves

        new = await filled_with(pool, 2, besides=old)
        assert len(new) == 2
        await wait_until(lambda: gone_with_volumes(old), timeout=20, every=0.1)
        await untouched(mid)
        done = await engine_events(since, ids)
        for cid in ids:  # they died, then the pool removed them: it did not kill them first
            actions = [action for i, action in done if i == cid]
            assert "die" in actions, actions
            assert "destroy" in actions, actions
            assert "kill" not in actions[: actions.index("die")], actions
    assert {kw["slot"] for kw in events(pool_log, "pool.docker_wait_lost")} >= old
    assert not failures(pool_log)
    assert not loop_errors
    assert not leaked()


async def test_a_dropped_wait_alone_does_not_end_a_live_pooled_container(
    settings: Settings,
    proxy: EngineProxy,
    pool_log: list[tuple[str, str, dict[str, Any]]],
    loop_errors: list[dict[str, Any]],
) -> None:
    """Only the pool's ``wait`` connections are cut (a proxy's idle timeout on some of them):
    the containers still hold their lifeline and run. They stay in the pool, the same ones,
    watched again (a new ``wait`` is sent for each), so that one dying afterwards is still
    seen and replaced."""
    async with (
        docker_provider(settings, Path.cwd(), engine_url=proxy.url) as provider,
        WarmPool(DockerPoolBackend(provider), 1, min_available_mb=0, refill_delay_s=0) as pool,
    ):
        (slot,) = await filled_with(pool, 1)
        cid = (await container(f"{POOL_PREFIX}{slot}"))["Id"]
        waits = [r for r in proxy.requests if f"{cid}/wait".encode() in r]
        assert len(waits) == 1

        assert proxy.cut(matching=b"/wait") == 1

        def watched_again() -> bool:
            return sum(f"{cid}/wait".encode() in r for r in proxy.requests) == 2

        await wait_until(watched_again, timeout=15, every=0.05)
        assert [m.slot for m in pool.ready if m.alive] == [slot]  # still the pool's, claimable
        assert (await container(f"{POOL_PREFIX}{slot}"))["State"]["Status"] == "running"

        async with aiodocker.Docker() as docker:  # then it dies: the new wait tells
            await docker_json(docker, f"containers/{cid}/kill", "POST")
        assert len(await filled_with(pool, 1, besides={slot})) == 1
        await wait_until(lambda: gone_with_volumes({slot}), timeout=20, every=0.1)
    assert not failures(pool_log)
    assert not loop_errors
    assert not leaked()


async def test_a_claimed_machine_whose_lifeline_is_cut_before_its_hand_over_is_refused(
    settings: Settings, proxy: EngineProxy
) -> None:
    """Claimed (renamed, limits written), then the connection drops before the identity is
    written: its stdin is closed for good, so the hand-over must fail (the provisioner then
    starts the machine cold) rather than write into nothing and wait for a report. (A drop
    this process has not seen yet when it writes cannot be told: docs/warm-pool.md.)"""
    async with docker_provider(settings, Path.cwd(), engine_url=proxy.url) as provider:
        backend = DockerPoolBackend(provider)
        try:
            machine = await backend.spawn(lambda: None)
            await machine.wait_up()
            await machine.claim(new_machine_id())
            assert proxy.cut() >= 2
            await wait_until(lambda: not machine.alive, timeout=10)  # this process saw it go
            with pytest.raises(ProviderError, match="ended before its hand-over"):
                await machine.hand_over(TOKEN)
        finally:
            await backend.close()


async def test_an_unreachable_engine_fails_spawns_with_backoff_and_the_pool_comes_back(
    settings: Settings,
    proxy: EngineProxy,
    pool_log: list[tuple[str, str, dict[str, Any]]],
    loop_errors: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The engine is unreachable for a while (the proxy cuts everything and refuses new
    connections). The pooled container ends by itself, on the engine, and the pool cannot
    remove it; the pool's refills fail and are retried with backoff, nothing crashes; once the
    engine answers again the pool refills and its sweep removes the exited container and its
    volume."""
    monkeypatch.setattr(docker_pool, "ORPHAN_GRACE_S", 0.2)  # gives up while unreachable
    async with (
        docker_provider(settings, Path.cwd(), engine_url=proxy.url) as provider,
        WarmPool(
            DockerPoolBackend(provider), 1, min_available_mb=0, refill_delay_s=0, sweep_s=1.0
        ) as pool,
    ):
        (slot,) = await filled_with(pool, 1)
        mid = await handed_over(pool)
        (slot,) = await filled_with(pool, 1)

        await proxy.stop_listening()
        await ended(f"{POOL_PREFIX}{slot}")  # by itself: the pool cannot reach the engine
        assert POOL_ORPHANED_LOG in await logs(f"{POOL_PREFIX}{slot}")
        await wait_until(lambda: len(events(pool_log, "pool.start_failed")) >= 2, timeout=20)
        assert [kw["failures"] for kw in events(pool_log, "pool.start_failed")][:2] == [1, 2]
        assert not [m for m in pool.ready if m.alive]

        def not_removed() -> bool:
            return slot in {kw["slot"] for kw in events(pool_log, "pool.docker_remove_failed")}

        await wait_until(not_removed, timeout=20)  # the pool gave up on it: the sweep's now
        await proxy.listen()
        await filled_with(pool, 1, besides={slot})
        await wait_until(lambda: gone_with_volumes({slot}), timeout=20, every=0.1)
        # By the sweep, which says so once its removals returned: a moment after the engine
        # shows the volume gone.
        await wait_until(lambda: bool(events(pool_log, "pool.orphans_removed")), timeout=10)
        await untouched(mid)
    assert not failures(pool_log)
    assert not loop_errors
    assert not leaked()
