"""Wake on access (docs/stop-start.md#wake-on-access), in memory: a call that needs a paused
machine resumes it, one that needs a stopped machine starts it, within the call, and ``by``
says which call; many calls at once wake it once; a look never wakes it. On real runsc and
real daemons: tests/integration/test_wake.py. With ``FLEET_WAKE_ON_ACCESS=false``, the
refusals: here, and tests/fast/test_pause.py, tests/fast/test_stop_start.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from contracts.bus.events import (
    MachineResumed,
    MachineResumeRequested,
    MachineStarted,
    WakeBy,
)
from contracts.errors import (
    Conflict,
    DaemonTimeout,
    Forbidden,
    MachineStopped,
    PortUnreachable,
    RunningMachinesLimit,
)
from contracts.models import Machine
from contracts.people import PORTS
from contracts.status import MachineStatus as S
from controlplane.settings import Settings
from services.gateway.auth import BadSecrets, Caller
from services.gateway.previews import preview
from services.gateway.rpc.wake import (
    WAKING_PAGE_AFTER_S,
    WOKEN_PORT_WAIT_S,
    Waker,
    open_woken,
    wake_for,
)
from services.gateway.streams import Tunnels
from tests.fakes.clock import TICK, ManualClock
from tests.fast.conftest import World
from tests.fast.test_gateway import token_of, two_instances
from tests.fast.test_pause import ready_gvisor

method = pytest.mark.gateway_method
ADMIN = Caller(token_id="t-admin")


async def settled(world: World, call: Awaitable[Any]) -> Any:
    """``call``'s answer, with the bus delivering (the provisioner's resume or start, the
    pipeline after it) while the call waits for its machine."""
    task = asyncio.ensure_future(call)
    async with asyncio.timeout(30):
        while not task.done():
            await world.bus.settle()
            await asyncio.wait({task}, timeout=0.01)
    return task.result()


async def paused(world: World, tmp_path: Path) -> Machine:
    m = await ready_gvisor(world, tmp_path)
    await world.rpc("machines.pause", {"machineId": m.id})
    await world.bus.settle()
    assert (await world.machine(m.id)).status is S.PAUSED
    return m


async def stopped(world: World) -> Machine:
    m = await world.ready_machine()
    await world.rpc("machines.stop", {"machineId": m.id})
    await world.bus.settle()
    assert (await world.machine(m.id)).status is S.STOPPED
    return m


EXEC = ("machines.exec", {"command": ["test", "-f", "/x"]})


@method("machines.exec")
async def test_an_exec_on_a_paused_machine_resumes_it_and_is_answered(
    world: World, tmp_path: Path
) -> None:
    m = await paused(world, tmp_path)
    ran = await settled(world, world.rpc(EXEC[0], {"machineId": m.id, **EXEC[1]}))
    assert ran["exitCode"] == 1  # answered by its daemon
    assert (await world.machine(m.id)).status is S.READY
    assert world.provider.resumes == [m.id]
    [asked] = world.bus.of(MachineResumeRequested, m.id)
    [resumed] = world.bus.of(MachineResumed, m.id)
    assert (asked.by, resumed.by) == (WakeBy.EXEC, WakeBy.EXEC)


@method("machines.exec")
async def test_an_exec_on_a_stopped_machine_starts_it_and_says_exec(world: World) -> None:
    m = await stopped(world)
    starts = len(world.provider.starts)
    ran = await settled(world, world.rpc(EXEC[0], {"machineId": m.id, **EXEC[1]}))
    assert ran["exitCode"] == 1
    assert (await world.machine(m.id)).status is S.READY
    assert len(world.provider.starts) == starts + 1
    [started] = world.bus.of(MachineStarted, m.id)
    assert (started.by, started.reason) == (WakeBy.EXEC, "woken by exec")


@pytest.mark.parametrize(
    ("method_name", "params", "by"),
    [
        ("machines.listDir", {"path": "."}, WakeBy.FILES),
        ("machines.writeFile", {"path": "x", "content": "y"}, WakeBy.FILES),
        ("machines.process.start", {"command": ["sleep", "1"]}, WakeBy.PROCESS),
        ("sessions.open", {"command": ["sh"]}, WakeBy.TERMINAL),
    ],
)
async def test_each_kind_of_call_wakes_its_machine_and_says_which(
    world: World, tmp_path: Path, method_name: str, params: dict[str, Any], by: WakeBy
) -> None:
    m = await paused(world, tmp_path)
    await settled(world, world.rpc(method_name, {"machineId": m.id, **params}))
    assert [e.by for e in world.bus.of(MachineResumed, m.id)] == [by]


async def test_calls_at_once_on_a_paused_machine_resume_it_once(
    world: World, tmp_path: Path
) -> None:
    m = await paused(world, tmp_path)
    calls = [world.rpc(EXEC[0], {"machineId": m.id, **EXEC[1]}) for _ in range(8)]
    answers = await settled(world, asyncio.gather(*calls))
    assert [a["exitCode"] for a in answers] == [1] * 8
    assert world.provider.resumes == [m.id]
    assert len(world.bus.of(MachineResumeRequested, m.id)) == 1
    assert len(world.bus.of(MachineResumed, m.id)) == 1


async def test_calls_at_once_on_a_stopped_machine_start_it_once(world: World) -> None:
    m = await stopped(world)
    starts = len(world.provider.starts)
    calls = [world.rpc(EXEC[0], {"machineId": m.id, **EXEC[1]}) for _ in range(8)]
    answers = await settled(world, asyncio.gather(*calls))
    assert [a["exitCode"] for a in answers] == [1] * 8
    assert len(world.provider.starts) == starts + 1
    assert len(world.bus.of(MachineStarted, m.id)) == 1


async def test_no_call_of_another_instances_caller_wakes_a_machine(
    world: World, tmp_path: Path
) -> None:
    """The caller's right to the machine is checked before anything wakes it: a call that
    would be refused must not resume or start it (its memory, its running limit, its cost)."""
    a, b = await two_instances(world)
    p = await ready_gvisor(world, tmp_path, a)
    await world.rpc("machines.pause", {"machineId": p.id})
    await world.bus.settle()
    for name, params in (EXEC, ("machines.previewTicket", {"port": 3000}),
                         ("machines.listDir", {"path": "."})):  # fmt: skip
        with pytest.raises(Forbidden):
            await world.rpc(name, {"machineId": p.id, **params}, token_of(b))
    with pytest.raises(Forbidden):
        await wake_for(world.api.access, token_of(b).doing(PORTS), p.id, WakeBy.PREVIEW, None)
    await world.bus.settle()
    assert world.bus.of(MachineResumeRequested) == []
    assert (await world.machine(p.id)).status is S.PAUSED


@method("machines.process.list", "machines.daemonLog")
async def test_a_look_never_wakes_a_machine(world: World, tmp_path: Path) -> None:
    p, s = await paused(world, tmp_path), await stopped(world)
    for name in ("machines.process.list", "machines.process.logs", "machines.daemonLog",
                 "machines.ports", "sessions.list"):  # fmt: skip
        params = {"tag": "x"} if name == "machines.process.logs" else {}
        with pytest.raises(Conflict):
            await world.rpc(name, {"machineId": p.id, **params})
        with pytest.raises(MachineStopped):
            await world.rpc(name, {"machineId": s.id, **params})
    assert (world.bus.of(MachineResumeRequested), world.bus.of(MachineStarted)) == ([], [])


@method("machines.previewTicket")
async def test_a_preview_ticket_starts_the_wake_and_answers_at_once(
    world: World, tmp_path: Path
) -> None:
    m = await paused(world, tmp_path)
    ticket = await world.rpc("machines.previewTicket", {"machineId": m.id, "port": 3000})
    assert ticket["ticket"]
    assert (await world.machine(m.id)).status is S.RESUMING  # not waited for
    [asked] = world.bus.of(MachineResumeRequested, m.id)
    assert asked.by == WakeBy.PREVIEW


async def test_a_preview_waits_a_second_for_a_browser_then_the_whole_wake(
    world: World, tmp_path: Path
) -> None:
    """``wake_for``: what the preview listener asks before it opens the tunnel. Within its
    budget and the machine still resuming: None (a browser gets the "waking" page)."""
    m = await paused(world, tmp_path)
    caller = ADMIN.doing(PORTS)
    assert await wake_for(world.api.access, caller, m.id, WakeBy.PREVIEW, 0.05) is None
    assert (await world.machine(m.id)).status is S.RESUMING  # the resume goes on
    woke = await settled(world, wake_for(world.api.access, caller, m.id, WakeBy.PREVIEW, None))
    assert woke is True
    assert [e.by for e in world.bus.of(MachineResumed, m.id)] == [WakeBy.PREVIEW]
    assert await wake_for(world.api.access, caller, m.id, WakeBy.PREVIEW, None) is False


async def test_a_start_on_access_keeps_to_the_instances_running_limit(world: World) -> None:
    m = await stopped(world)
    other = await world.ready_machine()
    await world.rpc("instances.setLimits", {"instanceId": m.instance_id,
                                            "maxRunningMachines": 0})  # fmt: skip
    with pytest.raises(RunningMachinesLimit):
        await world.rpc(EXEC[0], {"machineId": m.id, **EXEC[1]})
    assert (await world.machine(m.id)).status is S.STOPPED
    assert (await world.machine(other.id)).status is S.READY


class TestTimeout:
    async def test_a_wake_that_takes_too_long_is_a_timeout_naming_the_status(
        self, world: World, tmp_path: Path
    ) -> None:
        m = await paused(world, tmp_path)
        clock = ManualClock()
        waker = world.api.access.waker
        assert isinstance(waker, Waker)
        waker.clock = clock
        limit = world.settings.wake_timeout_s  # FLEET_WAKE_TIMEOUT_S, on the manual clock
        # Nothing delivers the resume here: the wake polls until its deadline.
        call = asyncio.ensure_future(world.rpc(EXEC[0], {"machineId": m.id, **EXEC[1]}))
        await clock.advance(limit - 0.01)
        assert not call.done()  # not before its time
        await clock.advance(0.01)
        with pytest.raises(DaemonTimeout) as late:
            await asyncio.wait_for(call, 10)
        assert late.value.data == {"status": "resuming"}
        assert "send it again" in late.value.message


class TestWokenPort:
    """``open_woken``: after a wake, a port nothing listens on yet is tried again for
    ``WOKEN_PORT_WAIT_S`` of the clock's time, and then refused; without a wake, at once."""

    @staticmethod
    def unreachable(tries: list[float], clock: ManualClock,
                    listens_at: float | None = None) -> Callable[[], Awaitable[str]]:  # fmt: skip
        async def open_() -> str:
            tries.append(clock.monotonic())
            if listens_at is not None and clock.monotonic() >= listens_at:
                return "opened"
            raise PortUnreachable("nothing listens on 3000", data={"port": 3000})

        return open_

    async def test_a_woken_port_is_tried_until_its_wait_is_over_then_refused(self) -> None:
        clock, tries = ManualClock(), list[float]()
        began = clock.monotonic()
        call = asyncio.ensure_future(open_woken(self.unreachable(tries, clock), True, clock))
        await clock.advance(WOKEN_PORT_WAIT_S - TICK)
        assert not call.done()  # still trying, not before its time
        assert len(tries) > 2
        await clock.advance(TICK)
        with pytest.raises(PortUnreachable):
            await asyncio.wait_for(call, 10)
        assert tries[-1] == began + WOKEN_PORT_WAIT_S  # the last try is at the wait's end

    async def test_a_woken_port_that_starts_listening_within_the_wait_is_opened(self) -> None:
        clock, tries = ManualClock(), list[float]()
        opens = self.unreachable(tries, clock, listens_at=clock.monotonic() + 3.0)
        call = asyncio.ensure_future(open_woken(opens, True, clock))
        await clock.advance(3.0 + 0.5)  # one backoff (capped at 0.5 s) past it
        assert await asyncio.wait_for(call, 10) == "opened"

    async def test_a_port_of_a_machine_that_was_awake_is_refused_at_once(self) -> None:
        clock, tries = ManualClock(), list[float]()
        with pytest.raises(PortUnreachable):
            await open_woken(self.unreachable(tries, clock), False, clock)
        assert len(tries) == 1


class TestOff:
    """``FLEET_WAKE_ON_ACCESS=false``: the refusals, at once, and nothing woken."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return msgspec.structs.replace(settings, wake_on_access=False)

    async def test_a_call_on_a_paused_or_stopped_machine_is_refused_and_wakes_nothing(
        self, world: World, tmp_path: Path
    ) -> None:
        p, s = await paused(world, tmp_path), await stopped(world)
        calls = len(world.daemons.calls)
        with pytest.raises(Conflict) as refused:
            await world.rpc(EXEC[0], {"machineId": p.id, **EXEC[1]})
        assert refused.value.data is not None
        assert refused.value.data["status"] == "paused"
        with pytest.raises(MachineStopped) as refused_stopped:
            await world.rpc(EXEC[0], {"machineId": s.id, **EXEC[1]})
        assert refused_stopped.value.code == 1040
        with pytest.raises(MachineStopped):
            await world.rpc("machines.previewTicket", {"machineId": s.id, "port": 3000})
        caller = ADMIN.doing(PORTS)
        assert await wake_for(world.api.access, caller, p.id, WakeBy.PREVIEW, None) is False
        await world.bus.settle()
        assert len(world.daemons.calls) == calls
        assert (world.bus.of(MachineResumeRequested), world.bus.of(MachineStarted)) == ([], [])
        assert (await world.machine(p.id)).status is S.PAUSED
        assert (await world.machine(s.id)).status is S.STOPPED


def preview_of(world: World) -> Tunnels:
    async def resolve(token: str) -> Caller | None:
        return ADMIN if token == "good" else None

    return Tunnels(opener=world.api.byte_streams, resolve=resolve, guesses=BadSecrets(60))


def page_load(machine_id: str, accept: str) -> web.Request:
    path = f"/machines/{machine_id}/ports/3000/"
    return make_mocked_request("GET", path, headers={"Accept": accept},
                               match_info={"machine_id": machine_id, "port": "3000"})  # fmt: skip


def on_manual_clock(world: World) -> ManualClock:
    """The world's waker on a manual clock: a wake's waits are moved by the test."""
    clock = ManualClock()
    waker = world.api.access.waker
    assert isinstance(waker, Waker)
    waker.clock = clock
    return clock


async def test_a_browsers_page_load_gets_the_waking_page_past_its_wait(
    world: World, tmp_path: Path
) -> None:
    """The preview listener's own path (``serve_preview``): a page load whose machine is not
    awake within ``WAKING_PAGE_AFTER_S`` (nothing delivers the resume) gets the page that loads
    itself again, then and not before, and the resume goes on."""
    clock = on_manual_clock(world)
    m = await paused(world, tmp_path)
    target = preview.Target(m.id, 3000, f"/machines/{m.id}/ports/3000/")
    html = "text/html,application/xhtml+xml,*/*;q=0.8"
    opened = preview.serve_preview(page_load(m.id, html), preview_of(world),
                                   world.api.ports.previews, "good", target)  # fmt: skip
    call = asyncio.ensure_future(opened)
    await clock.advance(WAKING_PAGE_AFTER_S - TICK)
    assert not call.done()
    await clock.advance(TICK)
    resp = await asyncio.wait_for(call, 10)
    assert isinstance(resp, web.Response)
    assert (resp.status, resp.headers["Cache-Control"]) == (200, "no-store")
    assert resp.text is not None
    assert 'http-equiv="refresh"' in resp.text
    assert (await world.machine(m.id)).status is S.RESUMING
    [asked] = world.bus.of(MachineResumeRequested, m.id)
    assert asked.by == WakeBy.PREVIEW


class TestHeld:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return msgspec.structs.replace(settings, wake_timeout_s=2 * WAKING_PAGE_AFTER_S)

    async def test_a_request_that_is_no_page_load_is_held_never_answered_the_page(
        self, world: World, tmp_path: Path
    ) -> None:
        clock = on_manual_clock(world)
        m = await paused(world, tmp_path)
        target = preview.Target(m.id, 3000, f"/machines/{m.id}/ports/3000/")
        opened = preview.serve_preview(page_load(m.id, "*/*"), preview_of(world),
                                       world.api.ports.previews, "good", target)  # fmt: skip
        call = asyncio.ensure_future(opened)
        await clock.advance(WAKING_PAGE_AFTER_S + TICK)
        assert not call.done()  # past a page load's wait: still held
        await clock.advance(WAKING_PAGE_AFTER_S)
        with pytest.raises(DaemonTimeout):  # held for the whole wake, which nothing delivers
            await asyncio.wait_for(call, 10)
