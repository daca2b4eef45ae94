"""Stopping and starting machines, ``docker`` provider, a real engine and every service: a stopped
machine has no container (its home volume stays, a warm-pool machine's too), the start
brings back its home, its background processes and a fresh .env; exec is refused at once;
auto-stop stops an idle one; a provisioner SIGKILLed and restarted removes a stopped
machine's container and starts nothing; redelivered events change nothing."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable
from contextlib import AsyncExitStack
from pathlib import Path

import msgspec
import pytest

from contracts.status import MachineStatus
from core.version import SOURCE_ROOT
from fleet.client import FleetClient
from providers.docker_home import home_ref_name
from providers.docker_names import LABEL_POOL
from providers.registry import docker_provider
from services.common.bus import Bus
from services.common.crypto import SecretBox
from services.common.settings import Settings
from services.common.store import Store
from services.prober.autostop import idle_reason
from services.provisioner.service import Provisioner
from tests.conftest import ADMIN_TOKEN
from tests.docker_env import (
    docker_gateway,
    docker_image,
    home_of,
    inspect,
    nats_server,
    remove_containers,
    volume_exists,
)
from tests.integration.test_docker_warm_pool import pooled
from tests.integration.test_stop_start import (
    consumers_caught_up,
    handle_again,
    provisioner_process,
)
from tests.stop_checks import ready_machine, stop_and_start_keep_the_machine, stopped_call_ms
from tests.waiters import wait_until

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")


@pytest.fixture(params=["cold", "pool"])
def stack_settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """A cold-started container, and one claimed from the warm pool (its home is the pool
    slot's volume, which a stopped machine has no container to find from)."""
    pool = "docker=1" if request.param == "pool" else ""
    return msgspec.structs.replace(settings, autostop_tick_s=0.5, warm_pool=pool,
                                   warm_pool_min_available_mb=0)  # fmt: skip


async def has_container(mid: str) -> bool:
    return await inspect(mid) is not None


@pytest.mark.timeout(300)  # two pipelines (create, then start) on a busy host
async def test_stop_then_start_keeps_a_docker_machine(
    stack: FleetClient, stack_settings: Settings
) -> None:
    if stack_settings.warm_pool:
        await pooled(stack_settings)  # so that the machine is claimed from the pool
    mid = await ready_machine(stack, "docked", "docker")
    home = await home_of(mid)  # the host path of its home volume
    from_pool = LABEL_POOL in (await inspect(mid))["Config"]["Labels"]
    assert from_pool == bool(stack_settings.warm_pool)
    before = (await inspect(mid))["Id"]

    async def home_path(m: str) -> Path:
        return await home_of(m)

    async def stopped_checks(m: str) -> bool:
        running = await has_container(m)
        if not running:  # no container, the home kept where it was
            assert home.is_dir()
            assert (home / "notes" / "kept.txt").is_file()
        return running

    await stop_and_start_keep_the_machine(stack, mid, home_path, stopped_checks)
    after = await inspect(mid)
    assert after["Id"] != before  # a new container...
    assert await home_of(mid) == home  # ...on the same home volume
    assert (await stack.get_machine(mid)).status is MachineStatus.READY

    # Archive of a stopped machine removes its home.
    await stack.stop_machine(mid)
    await wait_until(lambda: _no(has_container(mid)), timeout=30, every=0.2)
    assert await volume_exists_named(home_ref_name(mid)) == from_pool
    await stack.archive_machine(mid)

    async def gone() -> bool:
        return not home.exists() and not await volume_exists(mid)

    await wait_until(gone, timeout=30, every=0.2)
    assert not await volume_exists_named(home_ref_name(mid))


async def _no(value: Awaitable[bool]) -> bool:
    return not await value


async def volume_exists_named(name: str) -> bool:
    import aiodocker

    async with aiodocker.Docker() as docker:
        try:
            await (await docker.volumes.get(name)).show()  # type: ignore[no-untyped-call]
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return False
            raise
    return True


async def test_a_stopped_docker_machine_refuses_at_once_and_auto_stop_stops_it(
    stack: FleetClient, stack_settings: Settings
) -> None:
    mid = await ready_machine(stack, "idle-box", "docker")
    inst = (await stack.get_machine(mid)).instance_id
    since = time.monotonic()
    await stack.set_autostop(inst, 5)
    machine = await stack.wait_for(mid, ("stopped",), timeout_s=5 + 10)
    assert machine.status_reason == idle_reason(5)
    assert time.monotonic() - since >= 4
    await wait_until(lambda: _no(has_container(mid)), timeout=30, every=0.2)
    assert await stopped_call_ms(stack, mid) < 100


async def test_auto_stop_spares_a_docker_machine_typed_into(
    stack: FleetClient, stack_settings: Settings
) -> None:
    """Typing on a terminal once a second (no RPC after the attach) keeps the machine up past
    its idle time; left alone, it is stopped like any idle one."""
    mid = await ready_machine(stack, "typed-box", "docker")
    await stack.set_autostop((await stack.get_machine(mid)).instance_id, 5)
    opened = await stack.open_session(mid, ["/bin/cat"])
    ws = await stack.attach_session(mid, opened.session_id)
    try:
        until = time.monotonic() + 5 + 6  # past its idle time and two auto-stop ticks
        while time.monotonic() < until:
            await ws.send_bytes(b"k")
            await asyncio.sleep(1.0)
        assert (await stack.get_machine(mid)).status is MachineStatus.READY
    finally:
        await ws.close()
    machine = await stack.wait_for(mid, ("stopped",), timeout_s=5 + 10)
    assert machine.status_reason == idle_reason(5)


@pytest.mark.timeout(300)  # two pipelines (create, then start) on a busy host
async def test_a_provisioner_sigkilled_and_restarted_leaves_a_docker_machine_stopped(
    settings: Settings, bus: Bus, tmp_path: Path
) -> None:
    from services.gateway.__main__ import build as gateway
    from services.prober.__main__ import build as prober
    from services.setup_pusher.__main__ import build as setup_pusher

    async with AsyncExitStack() as es:
        for build in (setup_pusher, prober, gateway):
            await build(settings, es)
        client = FleetClient(f"http://127.0.0.1:{settings.port}", ADMIN_TOKEN, timeout_s=30)
        es.push_async_callback(client.close)
        log = tmp_path / "provisioner.log"
        async with provisioner_process(settings, log) as first:
            mid = await ready_machine(client, "survives", "docker")
            first.send_signal(signal.SIGKILL)
            await first.wait()
        await client.stop_machine(mid)
        assert await has_container(mid)  # nobody has carried out the stop yet
        async with provisioner_process(settings, log):
            await wait_until(lambda: _no(has_container(mid)), timeout=60, every=0.2)
            await consumers_caught_up(bus)
            assert (await client.get_machine(mid)).status is MachineStatus.STOPPED
        async with provisioner_process(settings, log):
            await consumers_caught_up(bus)
            assert (await client.get_machine(mid)).status is MachineStatus.STOPPED
            assert not await has_container(mid)
            assert await volume_exists(mid)  # its home is kept


@pytest.mark.timeout(300)  # two pipelines (create, then start) on a busy host
async def test_redelivered_docker_stop_and_start_change_nothing(
    stack: FleetClient, stack_settings: Settings, bus: Bus, store: Store
) -> None:
    mid = await ready_machine(stack, "redelivered", "docker")
    await stack.stop_machine(mid)
    await stack.start_machine(mid)  # right behind its stop
    ready = await stack.wait_for(mid, ("ready", "failed"), timeout_s=120)
    assert ready.status is MachineStatus.READY, ready.status_reason
    container = (await inspect(mid))["Id"]
    async with docker_provider(stack_settings, SOURCE_ROOT) as provider:
        again = Provisioner(store=store, bus=bus, providers={"docker": provider},
                            box=SecretBox(stack_settings.secret_key))  # fmt: skip
        await handle_again(again, bus, mid)
    info = await inspect(mid)
    assert info["Id"] == container  # the same container, never made twice
    assert info["State"]["Running"]
    assert info["RestartCount"] == 0
    assert (await stack.exec(mid, ["echo", "up"])).stdout == "up\n"
