"""Pause and resume of a gvisor machine (docs/stop-start.md), on real runsc sandboxes with real
daemons: a process's memory goes on with the same PID, the statuses and events, the host's
memory freed while paused, a terminal's shell and scrollback kept, a pause refused by name
while a process of the machine holds a TCP connection, and a preview request that wakes a
paused machine. The rules in memory: tests/fast/test_pause.py, tests/fast/test_wake.py.

One stack for the module (tests/gvisor_stack.py): each test pauses a machine of its own on it;
the test of a refused pause, which needs a shorter wait than the platform's, takes a stack of
its own."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from contracts.events import Event, MachinePaused, MachineResumed
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN, running_stack
from tests.gvisor_stack import gvisor_settings, module_stack
from tests.integration.test_files_cli import _fleet
from tests.integration.test_gvisor import answers, ready_gvisor, sandbox_processes
from tests.integration.test_ports import bearer, previews
from tests.integration.test_sessions import SHELL, Term
from tests.waiters import wait_until

__all__ = ["module_stack"]  # the fixture ``stack``, on this module's settings
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def stack_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with gvisor_settings(tmp_path_factory.mktemp("gvisor-pause"), runtime="gvisor") as made:
        yield made


@pytest.fixture
def park_settings(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Servers of the test's own, for a test that expects a pause to be refused for want of the
    daemon letting its connection go: it gives a shorter wait for that (``indirect``: its
    ``gvisor_park_wait_s``), a setting of the whole platform."""
    with gvisor_settings(tmp_path, runtime="gvisor", gvisor_park_wait_s=request.param) as made:
        yield made


@pytest_asyncio.fixture(loop_scope="module")
async def park_stack(park_settings: Settings) -> AsyncIterator[FleetClient]:
    async with running_stack(park_settings) as client:
        yield client


#: Holds 64 MiB, counts in memory, and writes "<pid> <count>" to its file each tick.
COUNTER = r"""
import os, sys, time
held = bytearray(os.urandom(1 << 20)) * 64
n = 0
while True:
    n += 1
    with open(sys.argv[1] + '.tmp', 'w') as f:
        f.write(f'{os.getpid()} {n} {len(held)}')
    os.replace(sys.argv[1] + '.tmp', sys.argv[1])
    time.sleep(0.2)
"""

#: Holds a TCP connection to the given address until killed.
HOLDER = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
open(sys.argv[3], 'w').write('connected')
time.sleep(3600)
"""


#: Serves HTTP on the given port only once the machine was paused and resumed: a listener
#: would block the pause. It takes the resume for the daemon's NATS connection coming back on
#: another local port (the connection is let go for the pause, and made anew after it).
SERVE_AFTER_RESUME = r"""
import http.server, sys, time
def connected():
    ports = set()
    for name in ('/proc/net/tcp', '/proc/net/tcp6'):
        for line in open(name).read().splitlines()[1:]:
            fields = line.split()
            if fields[3] == '01':
                ports.add(fields[1])
    return ports
first = set()
while not first:
    first = connected()
    time.sleep(0.05)
open(sys.argv[2], 'w').write('waiting')
while not connected() - first:
    time.sleep(0.05)
class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'awake after the pause'
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), Page).serve_forever()
"""


async def events_of(stack: FleetClient, mid: str, kind: type[Event]) -> list[Event]:
    out: list[Event] = []
    async with contextlib.aclosing(stack.events(mid, follow=False)) as events:
        async for _, event in events:
            if isinstance(event, kind):
                out.append(event)
    return out


@pytest.mark.timeout(900)
async def test_a_paused_gvisor_machine_resumes_with_its_processes_memory_and_pids(
    stack: FleetClient, stack_settings: Settings
) -> None:
    mid = await ready_gvisor(stack, "gv-pause")
    home = stack_settings.data_path.resolve() / "machines" / mid / "home"
    await stack.write_file(mid, "counter.py", COUNTER)
    proc = await stack.start_process(mid, [sys.executable, "-I", "counter.py", "count"],
                                     tag="counter")  # fmt: skip

    def count() -> tuple[int, int]:
        try:
            pid, n, _ = (home / "count").read_text().split()
        except (OSError, ValueError):
            return 0, 0
        return int(pid), int(n)

    await wait_until(lambda: count()[1] >= 3, timeout=180)
    pid_inside = count()[0]
    assert [p.pid for p in await stack.list_processes(mid) if p.tag == "counter"] == [proc.pid]

    pausing = await stack.pause_machine(mid)
    assert pausing.status == "pausing"
    paused = await stack.wait_for(mid, ["paused", "ready", "failed"], timeout_s=300)
    assert paused.status == "paused", paused.status_reason
    assert not sandbox_processes(mid)  # no runsc process of it: its host memory is freed
    at_pause = count()[1]
    [event] = await events_of(stack, mid, MachinePaused)
    assert isinstance(event, MachinePaused)
    assert event.bytes > 64 << 20  # the counter's memory is in the image
    assert paused.paused_bytes == event.bytes  # what machines.get and the console show
    assert event.duration_ms > 0
    assert count()[1] == at_pause  # nothing of it runs

    resuming = await stack.resume_machine(mid)
    assert resuming.status == "resuming"
    ready = await stack.wait_for(mid, ["ready", "failed"], timeout_s=300)
    assert ready.status == "ready", ready.status_reason
    # The same process goes on counting from its memory, with the same PID.
    await wait_until(lambda: count()[1] > at_pause, timeout=120)
    assert count()[0] == pid_inside
    assert count()[1] < at_pause + 1000  # went on from where it was, never from 0 again
    await wait_until(lambda: answers(stack, mid), timeout=120, every=0.5)  # daemon is back
    listed = [(p.pid, p.state) for p in await stack.list_processes(mid) if p.tag == "counter"]
    assert listed == [(proc.pid, "running")]
    [back] = await events_of(stack, mid, MachineResumed)
    assert isinstance(back, MachineResumed)
    assert (back.by, back.duration_ms > 0) == ("request", True)


@pytest.mark.timeout(900)
# Its process's connection is to NATS's port, which the pause takes for the daemon's: refused
# once the daemon has let its own go and the wait for the rest is over.
@pytest.mark.parametrize("park_settings", [2.0], indirect=True)
async def test_a_pause_is_refused_by_name_while_a_process_holds_a_tcp_connection(
    park_stack: FleetClient, park_settings: Settings
) -> None:
    stack, stack_settings = park_stack, park_settings
    mid = await ready_gvisor(stack, "gv-pause-tcp")
    home = stack_settings.data_path.resolve() / "machines" / mid / "home"
    await stack.write_file(mid, "holder.py", HOLDER)
    host, port = stack_settings.nats_url.removeprefix("nats://").rsplit(":", 1)
    holder = await stack.start_process(
        mid, [sys.executable, "-I", "holder.py", host, port, "held"], tag="holder"
    )
    await wait_until((home / "held").exists, timeout=180)
    await stack.pause_machine(mid)
    got = await stack.wait_for(mid, ["ready", "paused", "failed"], timeout_s=300)
    # Refused before the sandbox was touched: it runs on, its process and daemon with it.
    assert got.status == "ready", got.status_reason
    assert "TCP connection" in got.status_reason, got.status_reason
    assert sandbox_processes(mid)
    await wait_until(lambda: answers(stack, mid), timeout=120, every=0.5)
    listed = [(p.pid, p.state) for p in await stack.list_processes(mid) if p.tag == "holder"]
    assert listed == [(holder.pid, "running")]
    assert not await events_of(stack, mid, MachinePaused)


@pytest.mark.timeout(900)
async def test_a_terminal_reattaches_to_the_same_shell_with_its_scrollback_after_a_resume(
    stack: FleetClient, stack_settings: Settings
) -> None:
    mid = await ready_gvisor(stack, "gv-pause-term")
    opened = await stack.open_session(mid, SHELL, cols=80, rows=24, name="kept")
    term = Term(await stack.attach_session(mid, opened.session_id))
    await term.type("echo shell-$$-be''fore\n")  # what it prints is not what it echoes
    await term.until(b"-before", timeout=120)
    before = term.text.split(b"shell-")[-1].split(b"-before")[0]
    assert before.isdigit(), term.text[-300:]
    await term.ws.close()  # detached; the shell goes on
    for verb, want in (("pause", "paused"), ("resume", "ready")):  # through the CLI
        cli = await _fleet(stack_settings, "machines", verb, mid)
        out, err = await asyncio.wait_for(cli.communicate(), 320)
        assert cli.returncode == 0, (out, err)
        assert f"{mid}  {want}" in out.decode(), out
    await wait_until(lambda: answers(stack, mid), timeout=120, every=0.5)
    again = Term(await stack.attach_session(mid, opened.session_id))
    await again.until(b"shell-" + before + b"-before", timeout=60)  # its scrollback
    await again.type("echo shell-$$-af''ter\n")
    await again.until(b"shell-" + before + b"-after", timeout=120)  # the same shell
    await again.ws.close()


@pytest.mark.timeout(900)
async def test_an_idle_gvisor_machine_is_paused_by_auto_stop(stack: FleetClient) -> None:
    """Auto-pause (docs/stop-start.md#auto-stop): no action set, a gvisor machine idle for its
    idleAfterS is paused by the prober, through the path machines.pause takes."""
    mid = await ready_gvisor(stack, "gv-autopause")
    inst = (await stack.get_machine(mid)).instance_id
    assert (await stack.set_autostop(inst, 3)).action is None  # the default: pause gvisor
    got = await stack.wait_for(mid, ["paused", "stopped", "failed"], timeout_s=300)
    assert (got.status, got.status_reason) == ("paused", "idle for 3 s")
    assert not sandbox_processes(mid)
    [event] = await events_of(stack, mid, MachinePaused)
    assert isinstance(event, MachinePaused)
    assert event.bytes > 0
    await stack.set_autostop(inst, 0)  # the resume below must not be paused again at once
    await stack.resume_machine(mid)
    ready = await stack.wait_for(mid, ["ready", "failed"], timeout_s=300)
    assert ready.status == "ready", ready.status_reason
    await wait_until(lambda: answers(stack, mid), timeout=120, every=0.5)


@pytest.mark.timeout(900)
async def test_a_preview_request_to_a_paused_machine_wakes_it_and_answers_200(
    stack: FleetClient, stack_settings: Settings
) -> None:
    """Wake on access (docs/stop-start.md#wake-on-access): the request is held while the
    machine resumes (it is no browser's page load), then answered by the machine's program;
    ``machine.resumed`` says ``by: preview``."""
    mid = await ready_gvisor(stack, "gv-wake-preview")
    home = stack_settings.data_path.resolve() / "machines" / mid / "home"
    await stack.write_file(mid, "serve.py", SERVE_AFTER_RESUME)
    port = 8000  # of the machine's own network stack: nothing else listens there
    await stack.start_process(mid, [sys.executable, "-I", "serve.py", str(port), "waiting"],
                              tag="serve")  # fmt: skip
    await wait_until((home / "waiting").exists, timeout=180)  # it saw the daemon's connection
    await stack.pause_machine(mid)
    paused = await stack.wait_for(mid, ["paused", "ready", "failed"], timeout_s=300)
    assert paused.status == "paused", paused.status_reason
    page = f"{previews(stack_settings)}/machines/{mid}/ports/{port}/"
    held = aiohttp.ClientTimeout(total=300)
    async with (
        aiohttp.ClientSession(timeout=held) as session,
        session.get(page, headers=bearer(ADMIN_TOKEN)) as r,
    ):
        assert (r.status, await r.text()) == (200, "awake after the pause")
    assert (await stack.get_machine(mid)).status == "ready"
    resumed = await events_of(stack, mid, MachineResumed)
    assert [e.by for e in resumed if isinstance(e, MachineResumed)] == ["preview"]
