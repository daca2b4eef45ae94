"""Stopping and starting machines on each provider (``local``, ``docker``; on docker also a
machine claimed from the warm pool, whose home is the pool slot's volume, which a stopped
machine has no container to find from), every service and real daemons: stop and start keep
the machine (home, background processes, a fresh .env), a stopped machine runs nothing and
refuses daemon calls at once, auto-stop stops the idle and spares the busy, a provisioner
SIGKILLed and restarted leaves stopped machines stopped, and redelivered stop/start events
change nothing. What each provider's host shows of a machine (its processes, its container,
its home volume) is checked in that provider's cases."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aiohttp
import msgspec
import nats.errors
import pytest

from base.version import SOURCE_ROOT
from contracts.bus import subjects
from contracts.bus.consumers import Durable, host_durable
from contracts.bus.events import MachineStarted, MachineStopped, decode_event
from contracts.errors import Conflict, MachineStopped as Stopped, RunningMachinesLimit
from contracts.models import Machine
from contracts.status import STOPPED_OR_STOPPING, MachineStatus
from controlplane.bus import Bus
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from providers.base import Provider
from providers.docker import LABEL_POOL
from providers.docker.home import home_ref_name
from providers.local.processes import POOL_SLOT_FILE, machine_processes, machine_roots
from providers.local.provider import LocalProvider
from providers.registry import docker_provider
from services.prober.autostop import idle_reason
from services.provisioner.service import Provisioner, provisioner as make_provisioner
from tests.conftest import ADMIN_TOKEN
from tests.docker_env import (
    docker_gateway,
    docker_image,
    home_of,
    inspect,
    remove_containers,
    volume_exists,
)
from tests.integration.test_warm_pool import docker_pooled
from tests.provider_param import PROVIDERS, nats_server
from tests.stop_checks import (
    ready_machine,
    refused_as_stopped,
    stop_and_start_keep_the_machine,
)
from tests.waiters import wait_until

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]
#: Each provider's cold machine, and a docker machine claimed from its warm pool.
EACH = pytest.mark.parametrize(
    ("provider", "warm_pool"),
    [("local", ""), ("docker", ""), ("docker", "docker=1")],
    ids=["local", "docker", "docker-pool"],
)
LOCAL = pytest.mark.parametrize(("provider", "warm_pool"), [("local", "")], ids=["local"])
DOCKER = pytest.mark.parametrize(
    ("provider", "warm_pool"),
    [("docker", ""), ("docker", "docker=1")],
    ids=["docker", "docker-pool"],
)


#: How often the prober looks for idle machines here (FLEET_AUTOSTOP_TICK_S).
AUTOSTOP_TICK_S = 0.25
#: The auto-stop tests' idle time. A terminal typed into every KEY_EVERY_S has its activity
#: written as often (FLEET_ACTIVITY_WRITE_S=0), so a stall of this busy host under 3.9 s does
#: not stop the busy machine. The rule to the second (119 s: not yet, 120 s: stopped) is
#: tests/fast/test_clock_rules.py's.
IDLE_S = 4
#: How often the tests type a key on a terminal.
KEY_EVERY_S = 0.1


@pytest.fixture
def stack_settings(settings: Settings, warm_pool: str) -> Settings:
    """Wake on access off: these tests are of what a stopped machine refuses (a call that
    wakes it: tests/integration/test_wake.py). Every call's activity is written (auto-stop's
    tests type on a terminal for little more than their idle time)."""
    return msgspec.structs.replace(settings, autostop_tick_s=AUTOSTOP_TICK_S,
                                   activity_write_s=0.0, warm_pool=warm_pool,
                                   warm_pool_min_available_mb=0,
                                   wake_on_access=False)  # fmt: skip


async def runs(settings: Settings, provider: str, mid: str) -> bool:
    """Something of the machine runs on its provider: a root process of it (bwrap), or its
    container."""
    if provider == "local":
        return bool(machine_roots(settings.data_path / "machines" / mid, mid))
    return await inspect(mid) is not None


async def _no(value: Awaitable[bool]) -> bool:
    return not await value


@EACH
@pytest.mark.timeout(300)  # two pipelines (create, then start) on a busy host
async def test_stop_then_start_keeps_the_machine(
    stack: FleetClient, stack_settings: Settings, provider: str
) -> None:
    if stack_settings.warm_pool:
        await docker_pooled(stack_settings)  # so that the machine is claimed from the pool
    mid = await ready_machine(stack, "stopper", provider)
    if provider == "local":
        await local_stop_then_start(stack, stack_settings, mid)
    else:
        await docker_stop_then_start(stack, stack_settings, mid)


async def local_stop_then_start(stack: FleetClient, settings: Settings, mid: str) -> None:
    machine_dir = settings.data_path / "machines" / mid

    async def home(m: str) -> Path:
        return settings.data_path / "machines" / m / "home"

    async def running(m: str) -> bool:
        # Any process of it: bwrap, its init, the supervisor, the daemon (all started with
        # its id), and the background process (the caller looks for that one by its argv).
        return bool(machine_processes(settings.data_path / "machines" / m, m))

    roots_before = machine_roots(machine_dir, mid)
    await stop_and_start_keep_the_machine(stack, mid, home, running)
    roots_after = machine_roots(machine_dir, mid)
    assert len(roots_after) == 1  # one new root: not two
    assert roots_after != roots_before
    # No warm pool here: started cold (with one, tests/integration/test_start_pool.py).
    assert not (machine_dir / POOL_SLOT_FILE).exists()


async def docker_stop_then_start(stack: FleetClient, settings: Settings, mid: str) -> None:
    home = await home_of(mid)  # the host path of its home volume
    from_pool = LABEL_POOL in (await inspect(mid))["Config"]["Labels"]
    assert from_pool == bool(settings.warm_pool)
    before = (await inspect(mid))["Id"]

    async def home_path(m: str) -> Path:
        return await home_of(m)

    async def stopped_checks(m: str) -> bool:
        running = await inspect(m) is not None
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
    await wait_until(lambda: _no(runs(settings, "docker", mid)), timeout=30, every=0.2)
    assert await volume_exists_named(home_ref_name(mid)) == from_pool
    await stack.archive_machine(mid)

    async def gone() -> bool:
        return not home.exists() and not await volume_exists(mid)

    await wait_until(gone, timeout=30, every=0.2)
    assert not await volume_exists_named(home_ref_name(mid))


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


@LOCAL
async def test_what_a_stopped_machine_refuses_and_what_it_allows(
    stack: FleetClient, settings: Settings
) -> None:
    mid = await ready_machine(stack, "refuses")
    inst = (await stack.get_machine(mid)).instance_id
    await stack.stop_machine(mid)
    await refused_as_stopped(stack, mid)
    for call in (
        stack.write_file(mid, "x", "y"),
        stack.list_processes(mid),
        stack.start_process(mid, ["true"]),
    ):
        with pytest.raises(Stopped):
            await call
    refreshed = await stack.refresh_env(inst)  # a stopped machine is not a running one
    assert (refreshed.machines, refreshed.failed) == (0, [])
    with pytest.raises(Conflict):  # one machine per instance: a stopped one is still it
        await stack.create_machine(inst)

    limits = await stack.set_limits(inst, max_running_machines=0)
    assert limits.max_running_machines == 0
    with pytest.raises(RunningMachinesLimit) as refused:
        await stack.start_machine(mid)
    assert refused.value.code == 1041
    assert (await stack.get_machine(mid)).status in STOPPED_OR_STOPPING  # the start moved nothing
    await stack.set_limits(inst, max_running_machines=1)
    await stack.start_machine(mid)
    await stack.wait_for(mid, ("ready",), timeout_s=60)

    # Archive of a stopped machine: allowed, and final.
    await stack.stop_machine(mid)
    archived = await stack.archive_machine(mid)
    assert archived.status is MachineStatus.ARCHIVING
    await stack.wait_for(mid, [MachineStatus.ARCHIVED], 30)
    with pytest.raises(Conflict):
        await stack.start_machine(mid)


@LOCAL
async def test_auto_stop_stops_the_idle_and_spares_the_busy(
    stack: FleetClient, settings: Settings, store: Store
) -> None:
    idle, busy = await asyncio.gather(ready_machine(stack, "idle"), ready_machine(stack, "busy"))
    for mid in (idle, busy):
        inst = (await stack.get_machine(mid)).instance_id
        assert (await stack.set_autostop(inst, IDLE_S)).idle_after_s == IDLE_S
    # The busy one is only typed into, on a terminal: no RPC call after the attach.
    opened = await stack.open_session(busy, ["/bin/cat"])
    ws = await stack.attach_session(busy, opened.session_id)
    attached = time.monotonic()  # the busy one's last activity but its keys
    try:
        stopped = asyncio.create_task(stack.wait_for(idle, ("stopped",), timeout_s=IDLE_S + 10))
        while not stopped.done():
            await ws.send_bytes(b"k")
            await asyncio.wait({stopped}, timeout=KEY_EVERY_S)
        machine = await stopped
        assert machine.status_reason == idle_reason(IDLE_S) == "idle for 4 s"
        assert await idle_when_stopped(store, machine) >= IDLE_S  # not before it was idle
        # The busy one goes on past its idle time, typed into: up to four auto-stop ticks
        # (AUTOSTOP_TICK_S) after its keys alone kept it up.
        await type_for(ws, attached + IDLE_S + 4 * AUTOSTOP_TICK_S - time.monotonic())
        assert (await stack.get_machine(busy)).status is MachineStatus.READY
    finally:
        await ws.close()
    # Left alone, the busy one goes too: attaching was not a lasting exemption.
    machine = await stack.wait_for(busy, ("stopped",), timeout_s=IDLE_S + 10)
    assert machine.status_reason == "idle for 4 s"


async def idle_when_stopped(store: Store, machine: Machine) -> float:
    """How long a stopped machine had been idle when it was stopped, by the product's own
    records: from its last recorded activity to its last move (to stopped); the rule to the
    second is tests/fast/test_clock_rules.py's."""
    last = (await store.stops.last_activity([machine.id]))[machine.id]
    assert last is not None
    return machine.updated_at.timestamp() - last


async def type_for(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> None:
    """A key on the terminal every ``KEY_EVERY_S`` for ``seconds``: activity with no RPC
    call."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        await ws.send_bytes(b"k")
        await asyncio.sleep(KEY_EVERY_S)


@DOCKER
async def test_auto_stop_spares_a_docker_machine_typed_into_then_stops_it_and_it_refuses(
    stack: FleetClient, stack_settings: Settings, store: Store
) -> None:
    """Typing on a terminal (no RPC after the attach) keeps the machine up past
    its idle time; left alone, it is stopped like any idle one: its container ends, and daemon
    calls are refused at once."""
    mid = await ready_machine(stack, "typed-box", "docker")
    await stack.set_autostop((await stack.get_machine(mid)).instance_id, IDLE_S)
    opened = await stack.open_session(mid, ["/bin/cat"])
    ws = await stack.attach_session(mid, opened.session_id)
    try:
        await type_for(ws, IDLE_S + 4 * AUTOSTOP_TICK_S)  # past its idle time and four ticks
        assert (await stack.get_machine(mid)).status is MachineStatus.READY
    finally:
        await ws.close()
    machine = await stack.wait_for(mid, ("stopped",), timeout_s=IDLE_S + 10)
    assert machine.status_reason == idle_reason(IDLE_S)
    assert await idle_when_stopped(store, machine) >= IDLE_S
    await wait_until(lambda: _no(runs(stack_settings, "docker", mid)), timeout=30, every=0.2)
    await refused_as_stopped(stack, mid)


@asynccontextmanager
async def provisioner_process(
    settings: Settings, log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {**os.environ, **settings.to_env(), "FLEET_LOG_LEVEL": "info"}
    with open(log, "ab") as out:  # noqa: ASYNC230 - a local file, opened once
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.provisioner", env=env, stdout=out, stderr=out
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.timeout(300)  # two pipelines (create, then start) on a busy host
async def test_a_provisioner_sigkilled_and_restarted_leaves_stopped_machines_stopped(
    settings: Settings, bus: Bus, tmp_path: Path, provider: str
) -> None:
    """The stop is published while no provisioner runs (SIGKILLed): the machine still runs.
    The restarted provisioner ends it (its start finds a live process, or a container, for a
    stopped machine) and starts nothing; a docker machine's home volume is kept."""
    from providers.local import stop_all_local
    from services.gateway.__main__ import build as gateway
    from services.prober.__main__ import build as prober
    from services.setup_pusher.__main__ import build as setup_pusher

    async with AsyncExitStack() as es:
        es.callback(stop_all_local, settings.data_path)
        for build in (setup_pusher, prober, gateway):
            await build(settings, es)
        client = FleetClient(f"http://127.0.0.1:{settings.port}", ADMIN_TOKEN, timeout_s=30)
        es.push_async_callback(client.close)
        log = tmp_path / "provisioner.log"
        async with provisioner_process(settings, log) as first:
            mid = await ready_machine(client, "survives", provider)
            first.send_signal(signal.SIGKILL)
            await first.wait()
        assert await runs(settings, provider, mid)  # the machine outlives its provisioner
        await client.stop_machine(mid)
        assert await runs(settings, provider, mid)  # nobody has carried out the stop yet
        async with provisioner_process(settings, log):
            await wait_until(lambda: _no(runs(settings, provider, mid)), timeout=60, every=0.2)
            await consumers_caught_up(bus)
            assert (await client.get_machine(mid)).status is MachineStatus.STOPPED
            assert not await runs(settings, provider, mid)
        # SIGKILLed again while it is stopped: the next one leaves it stopped too.
        async with provisioner_process(settings, log):
            await provisioner_up(bus, settings)
            await consumers_caught_up(bus)
            assert (await client.get_machine(mid)).status is MachineStatus.STOPPED
            assert not await runs(settings, provider, mid)
            if provider == "docker":
                assert await volume_exists(mid)  # its home is kept


async def provisioner_up(bus: Bus, settings: Settings) -> None:
    """The host's provisioner answers on its RPC subject (here, that it has no such method):
    it serves that once it has resumed, ending what runs of stopped machines."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "host.none", "params": {}}).encode()

    async def answers() -> bool:
        try:
            await bus.nc.request(subjects.host_rpc(settings.host_id), body, timeout=5.0)
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError):
            return False
        return True

    await wait_until(answers, timeout=60, every=0.1)


async def consumers_caught_up(bus: Bus) -> None:
    """The stop and start durables of this host (the tests' provisioners have the default
    FLEET_HOST_ID) have handled every event."""
    host_id = Settings().host_id

    async def done() -> bool:
        for durable in (Durable.PROVISIONER_STOP, Durable.PROVISIONER_START):
            try:
                info = await bus.js.consumer_info(
                    subjects.STREAM_NAME, host_durable(durable, host_id)
                )
            except Exception:  # noqa: BLE001 - not made yet: its provisioner is starting
                return False
            if info.num_pending or info.num_ack_pending:
                return False
        return True

    await wait_until(done, timeout=30)


@EACH
@pytest.mark.timeout(300)  # two pipelines (create, then start) on a busy host
async def test_redelivered_stop_and_start_change_nothing(
    stack: FleetClient, stack_settings: Settings, bus: Bus, store: Store, provider: str
) -> None:
    """Every stop and start event of a machine handled again (as a redelivery does, here by a
    second provisioner over the same store and bus): no second start, no stop of a running
    machine. And a start right behind its stop waits for the stop to be carried out."""
    settings = stack_settings
    mid = await ready_machine(stack, "redelivered", provider)
    await stack.stop_machine(mid)
    await stack.start_machine(mid)  # right behind: the stop may not be carried out yet
    ready = await stack.wait_for(mid, ("ready", "failed"), timeout_s=120)
    assert ready.status is MachineStatus.READY, ready.status_reason
    machine_dir = settings.data_path / "machines" / mid
    if provider == "local":
        roots = machine_roots(machine_dir, mid)
        assert len(roots) == 1
    else:
        container = (await inspect(mid))["Id"]

    async with second_provider(settings, provider) as again_provider:
        again = make_provisioner(store=store, bus=bus, providers={provider: again_provider},
                                 box=SecretBox(settings.secret_key), settings=settings)  # fmt: skip
        await handle_again(again, bus, mid)
    if provider == "local":
        assert machine_roots(machine_dir, mid) == roots  # the same machine, still running
    else:
        info = await inspect(mid)
        assert info["Id"] == container  # the same container, never made twice
        assert info["State"]["Running"]
        assert info["RestartCount"] == 0
    assert (await stack.get_machine(mid)).status is MachineStatus.READY
    assert (await stack.exec(mid, ["echo", "up"])).stdout == "up\n"


@asynccontextmanager
async def second_provider(settings: Settings, provider: str) -> AsyncIterator[Provider]:
    """Another instance of the provider over the same data dir (a second provisioner's)."""
    if provider == "docker":
        async with docker_provider(settings, SOURCE_ROOT) as docker:
            yield docker
        return
    yield LocalProvider(data_dir=settings.data_path, nats_url=settings.nats_url,
                        environ=os.environ, shared=settings.sandbox_shared)  # fmt: skip


async def handle_again(provisioner: Provisioner, bus: Bus, mid: str) -> None:
    """Every stored stop and start event of the machine, handled twice more by
    ``provisioner`` (as redeliveries are)."""
    events = await machine_events(bus, mid, (MachineStopped, MachineStarted))
    assert [type(e) for e in events] == [MachineStopped, MachineStarted]
    for event in (*events, *events):
        if isinstance(event, MachineStopped):
            await provisioner.stop_start.on_stopped(event)
        else:
            await provisioner.stop_start.on_started(event)


async def machine_events(
    bus: Bus, mid: str, kinds: tuple[type[MachineStopped], type[MachineStarted]]
) -> list[MachineStopped | MachineStarted]:
    """The machine's stored stop and start events, in stream order: as many of its events
    are read as the stream holds (not until a read times out)."""
    subject = subjects.machine_events(mid)
    info = await bus.js.stream_info(subjects.STREAM_NAME, subjects_filter=subject)
    stored = sum((info.state.subjects or {}).values())
    found: list[MachineStopped | MachineStarted] = []
    sub = await bus.js.subscribe(subject, ordered_consumer=True)
    try:
        for _ in range(stored):
            event = decode_event((await sub.next_msg(timeout=10.0)).data)
            if isinstance(event, kinds):
                found.append(event)
    finally:
        await sub.unsubscribe()
    return found
