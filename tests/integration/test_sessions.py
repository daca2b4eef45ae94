"""Interactive sessions through the whole stack: the gateway's methods and its attach
WebSocket, real daemons running real shells on PTYs."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
from pathlib import Path

import aiohttp
import pytest

from contracts.daemon import sessions as ss
from contracts.errors import Forbidden, NotFound, Unauthorized
from contracts.gateway import sessions as gs
from fleet.client import FleetClient
from tests.conftest import ReadyMachine
from tests.stop_checks import host_pids_running, unique_sleep
from tests.waiters import wait_until

SHELL = ["bash", "--norc", "--noprofile", "-i"]
# Each test takes a ready machine of its own on the module's stack, and acts only inside it.
pytestmark = pytest.mark.asyncio(loop_scope="module")


class Term:
    """One attached WebSocket: the terminal text so far, the control messages."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.text = b""
        self.controls: list[dict[str, object]] = []

    async def until(self, wanted: bytes, timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while wanted not in self.text:
                if not await self._next():
                    raise AssertionError(f"closed before {wanted!r}: {self.text[-300:]!r}")

    async def _next(self) -> bool:
        msg = await self.ws.receive()
        if msg.type is aiohttp.WSMsgType.BINARY:
            self.text += msg.data
        elif msg.type is aiohttp.WSMsgType.TEXT:
            self.controls.append(json.loads(msg.data))
        else:
            return False
        return True

    async def to_close(self, timeout: float = 20) -> int | None:
        """Read to the close; the close code."""
        async with asyncio.timeout(timeout):
            while await self._next():
                pass
        return self.ws.close_code

    async def type(self, text: str) -> None:
        await self.ws.send_bytes(text.encode())


async def open_term(stack: FleetClient, mid: str, sid: str) -> Term:
    return Term(await stack.attach_session(mid, sid))


async def test_a_shell_echoes_resizes_stops_sleep_on_ctrl_c_and_exits_with_its_code(
    shared_stack: FleetClient,
    ready_machine: ReadyMachine,
) -> None:
    mid = await ready_machine("term")
    opened = await shared_stack.open_session(mid, SHELL, cols=90, rows=20, name="main")
    assert opened.attach_path == gs.attach_path(mid, opened.session_id)
    t = await open_term(shared_stack, mid, opened.session_id)
    await t.type("echo hel''lo\n")
    await t.until(b"hello")
    await t.type("stty size\n")
    await t.until(b"20 90")
    await t.ws.send_str(json.dumps({"type": "resize", "cols": 120, "rows": 40}))
    await wait_until(lambda: _size_is(shared_stack, mid, opened.session_id, (120, 40)), timeout=10)
    await t.type("stty size\n")
    await t.until(b"40 120")
    sleep = unique_sleep()
    await t.type(" ".join(sleep) + "\n")
    await wait_until(lambda: bool(host_pids_running(sleep)), timeout=10)
    await t.type("\x03")  # the byte a terminal sends for Ctrl-C
    await wait_until(lambda: not host_pids_running(sleep), timeout=10)
    await t.type("echo after-$?\n")
    await t.until(b"after-130")
    await t.ws.send_str('{"type":"resize","cols":0}')  # refused, and the socket lives on
    await t.type("exit 3\n")
    assert await t.to_close() == 1000
    assert t.controls[-1] == {"type": "exit", "code": 3}
    assert t.controls[-2]["type"] == "error"


async def _size_is(stack: FleetClient, mid: str, sid: str, size: tuple[int, int]) -> bool:
    [info] = [s for s in await stack.list_sessions(mid) if s.session_id == sid]
    return (info.cols, info.rows) == size


async def test_reattach_replays_the_scrollback_two_viewers_and_exit_ends_every_socket(
    shared_stack: FleetClient,
    ready_machine: ReadyMachine,
) -> None:
    mid = await ready_machine("term2")
    opened = await shared_stack.open_session(mid, SHELL)
    first = await open_term(shared_stack, mid, opened.session_id)
    await first.type("echo one-$((40+2))\n")
    await first.until(b"one-42")
    await first.ws.close()  # detach
    [listed] = await shared_stack.list_sessions(mid)
    assert listed.running
    again = await open_term(shared_stack, mid, opened.session_id)
    other = await open_term(shared_stack, mid, opened.session_id)
    for t in (again, other):
        await t.until(b"one-42")  # the scrollback first
    await other.type("echo two-$((50+5))\n")
    for t in (again, other):
        await t.until(b"two-55")  # both see live output
    await again.type("exit 5\n")
    for t in (again, other):
        assert await t.to_close() == 1000
        assert t.controls[-1] == {"type": "exit", "code": 5}
    assert await shared_stack.close_session(mid, opened.session_id)
    assert await shared_stack.list_sessions(mid) == []


async def test_a_yes_flood_grows_no_buffer_and_the_session_stays_usable(
    shared_stack: FleetClient,
    ready_machine: ReadyMachine,
) -> None:
    """10 s of `yes` with one viewer reading and one not reading at all: the daemon's and the
    gateway's memory stay flat, the reader keeps getting output, and Ctrl-C still works."""
    mid = await ready_machine("flood")
    opened = await shared_stack.open_session(mid, SHELL)
    reader = await open_term(shared_stack, mid, opened.session_id)
    stalled = await open_term(shared_stack, mid, opened.session_id)  # never reads
    await reader.type("echo ready-$((1+1))\n")
    await reader.until(b"ready-2")
    daemon = _daemon_pid(mid)
    before = (_rss(daemon), _own_rss())
    await reader.type("yes\n")
    got, peak, deadline = 0, before, time.monotonic() + 10
    while time.monotonic() < deadline:
        msg = await asyncio.wait_for(reader.ws.receive(), 10)
        if msg.type is aiohttp.WSMsgType.BINARY:
            got += len(msg.data)
        peak = (max(peak[0], _rss(daemon)), max(peak[1], _own_rss()))
    assert got > 1024 * 1024  # it flowed (slowly: the test host is shared and busy)
    assert peak[0] - before[0] < 32 * 1024 * 1024, (before, peak)  # daemon: flat
    assert peak[1] - before[1] < 64 * 1024 * 1024, (before, peak)  # this process: gateway
    await reader.type("\x03")
    await reader.type("echo done-$((2+3))\n")
    await reader.until(b"done-5", timeout=60)
    # The stalled viewer, reading at last, sees the present (what it missed beyond the sockets'
    # own buffers is announced: tests/integration/test_sessions_daemon.py counts it exactly).
    await stalled.until(b"done-5", timeout=60)
    await stalled.ws.close()
    await reader.ws.close()


def _daemon_pid(mid: str) -> int:
    want = f"FLEET_MACHINE_ID={mid}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if want in environ and b"daemon" in cmdline and b"supervise" not in cmdline:
            return int(entry)
    raise AssertionError(f"no daemon process for {mid}")


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _own_rss() -> int:
    return _rss(os.getpid()) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def test_another_instances_token_cannot_list_attach_or_close(
    shared_stack: FleetClient, ready_machine: ReadyMachine
) -> None:
    mid = await ready_machine("victim")
    opened = await shared_stack.open_session(mid, SHELL)
    other = await shared_stack.create_instance("attacker")
    token = (await shared_stack.create_token("a", other.id)).token
    async with FleetClient(shared_stack.url, token) as attacker:
        with pytest.raises(Forbidden):
            await attacker.list_sessions(mid)
        with pytest.raises(Forbidden):
            await attacker.close_session(mid, opened.session_id)
        with pytest.raises(Forbidden):
            await attacker.resize_session(mid, opened.session_id, 10, 10)
        with pytest.raises(Forbidden):
            await attacker.open_session(mid, ["id"])
        with pytest.raises(Forbidden):  # the gateway's error, from its header
            await attacker.attach_session(mid, opened.session_id)
    async with FleetClient(shared_stack.url, "") as anonymous:
        with pytest.raises(Unauthorized):
            await anonymous.attach_session(mid, opened.session_id)
    with pytest.raises(NotFound) as missing:
        await shared_stack.attach_session(mid, "0" * 16)
    assert missing.value.code == NotFound.code
    assert [s.session_id for s in await shared_stack.list_sessions(mid)] == [opened.session_id]


async def test_a_browser_attaches_with_a_single_use_ticket(
    shared_stack: FleetClient, ready_machine: ReadyMachine
) -> None:
    mid = await ready_machine("ticket")
    opened = await shared_stack.open_session(mid, SHELL)
    url = shared_stack.url + opened.attach_path
    async with aiohttp.ClientSession() as browser:  # no Authorization header, as a browser
        ticket = (await shared_stack.events_ticket()).ticket
        async with browser.ws_connect(f"{url}?ticket={ticket}") as ws:
            t = Term(ws)
            await t.type("echo via-$((2*21))\n")
            await t.until(b"via-42")
        for spent in (ticket, "evt_forged"):  # single use; and nothing else is one
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await browser.ws_connect(f"{url}?ticket={spent}")
            assert refused.value.status == 401
    assert await shared_stack.close_session(mid, opened.session_id)


async def test_a_list_of_sessions_with_huge_commands_stays_usable(
    shared_stack: FleetClient, ready_machine: ReadyMachine
) -> None:
    """Three sessions of 600 KB of arguments each: sessions.list answers all three, each
    command cut to LISTED_COMMAND_BYTES and saying so, never 1013 over the message size."""
    mid = await ready_machine("huge-argv")
    args = ["a" * 4000] * 150
    opened = [await shared_stack.open_session(mid, ["sh", "-c", "sleep 600", "sh", *args])
              for _ in range(3)]  # fmt: skip
    assert len(opened[0].command) == 154  # sessions.open answers it whole
    listed = {s.session_id: s for s in await shared_stack.list_sessions(mid)}
    assert set(listed) == {o.session_id for o in opened}
    for s in listed.values():
        assert s.command_truncated
        assert s.command[:3] == ["sh", "-c", "sleep 600"]
        assert sum(len(a.encode()) + 1 for a in s.command) <= ss.LISTED_COMMAND_BYTES
    for o in opened:
        assert await shared_stack.close_session(mid, o.session_id)
