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
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from contracts.bus.events import Event, MachinePaused, MachineResumed
from controlplane.host_addresses import nats_servers
from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.gvisor.pause import checkpoint_sandbox
from providers.gvisor.runsc import BUNDLE, IMAGE_DIR, PID_FILE, Runsc, sandbox_pid, start_sandbox
from tests.conftest import ADMIN_TOKEN, running_stack
from tests.gvisor_stack import gvisor_settings, host_address, module_stack
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

#: Real work a pause keeps: asks the machine's own web server (argv[1], a port of its
#: loopback) for a page on one kept-alive connection every 0.1 s, and holds a connection to a
#: server outside (argv[2]:argv[3]), which it makes again whenever it is reset or ends. Writes
#: "<pid> <pages> <outside connections>" to argv[4] each tick.
KEEPER = r"""
import http.client, os, socket, sys, time
port, host, out_port, path = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
while True:  # until the server listens: then one connection, kept alive
    try:
        socket.create_connection(('127.0.0.1', port), timeout=5).close()
        break
    except OSError:
        time.sleep(0.1)
web = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
outside, made, pages = None, 0, 0
while True:
    web.request('GET', '/')
    web.getresponse().read()
    pages += 1
    try:
        if outside is None:
            outside = socket.create_connection((host, out_port), timeout=5)
            made += 1
        outside.sendall(b'ping')
        if not outside.recv(4):
            raise ConnectionResetError('ended')
    except OSError:
        if outside is not None:
            outside.close()
        outside = None
    with open(path + '.tmp', 'w') as f:
        f.write(f'{os.getpid()} {pages} {made}')
    os.replace(path + '.tmp', path)
    time.sleep(0.1)
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
async def test_a_machine_serving_pages_and_holding_connections_pauses_resumes_and_wakes(
    stack: FleetClient, stack_settings: Settings
) -> None:
    """A web server, a client of it on a kept-alive loopback connection, and a connection to a
    server outside: the pause keeps the first two (their PIDs and their state go on), closes the
    third as a laptop's sleep does (its process sees it end after the resume, and makes it
    again), and a browser's preview of the paused machine wakes it (``by: preview``) and gets
    the server's page."""
    mid = await ready_gvisor(stack, "gv-serving")
    home = stack_settings.data_path.resolve() / "machines" / mid / "home"
    outside = await echo_server(host_address())
    port = 8000  # of the machine's own network stack: nothing else listens there
    web = await stack.start_process(
        mid, ["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1"], tag="web"
    )
    await stack.write_file(mid, "keeper.py", KEEPER)
    keeper = await stack.start_process(
        mid, [sys.executable, "-I", "keeper.py", str(port), host_address(),
              str(outside.port), "kept"], tag="keeper",
    )  # fmt: skip

    def kept() -> tuple[int, int, int]:
        try:
            pid, pages, made = (home / "kept").read_text().split()
        except (OSError, ValueError):
            return 0, 0, 0
        return int(pid), int(pages), int(made)

    try:
        await wait_until(lambda: kept()[1] >= 3 and outside.accepted == 1, timeout=180)
        pid_inside = kept()[0]
        await stack.pause_machine(mid)
        paused = await stack.wait_for(mid, ["paused", "ready", "failed"], timeout_s=300)
        assert paused.status == "paused", paused.status_reason
        at_pause = kept()[1]
        await stack.resume_machine(mid)
        ready = await stack.wait_for(mid, ["ready", "failed"], timeout_s=300)
        assert ready.status == "ready", ready.status_reason
        # The same client goes on with the same server, on its kept connection; the one to the
        # outside was closed at the pause, and is made again.
        await wait_until(lambda: kept()[1] > at_pause + 3 and outside.accepted == 2, timeout=120)
        assert kept()[0] == pid_inside
        assert kept()[2] == 2
        await wait_until(lambda: answers(stack, mid), timeout=120, every=0.5)
        running = {p.tag: (p.pid, p.state) for p in await stack.list_processes(mid)}
        assert running["web"] == (web.pid, "running")
        assert running["keeper"] == (keeper.pid, "running")
        # Paused again: a browser's preview wakes it and gets the server's own page.
        await stack.pause_machine(mid)
        paused = await stack.wait_for(mid, ["paused", "ready", "failed"], timeout_s=300)
        assert paused.status == "paused", paused.status_reason
        page = f"{previews(stack_settings)}/machines/{mid}/ports/{port}/"
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session,
            session.get(page, headers=bearer(ADMIN_TOKEN)) as r,
        ):
            assert r.status == 200
            assert "Directory listing" in await r.text()
        assert (await stack.get_machine(mid)).status == "ready"
        resumed = await events_of(stack, mid, MachineResumed)
        assert [e.by for e in resumed if isinstance(e, MachineResumed)] == ["request", "preview"]
    finally:
        await outside.close()


@dataclass
class Outside:
    server: asyncio.Server
    port: int = 0
    accepted: int = 0
    #: Each connection's echo task, owned from its accept: a connection accepted just before
    #: the close, whose task had not run yet, was left open and reported unclosed later, in
    #: another test.
    echoes: set[asyncio.Task[None]] = field(default_factory=set)

    async def close(self) -> None:
        """The server and every connection it still holds (a machine's, cut by its pause,
        is never closed by its other end)."""
        self.server.close()
        for task in self.echoes:
            task.cancel()
        await asyncio.gather(*self.echoes, return_exceptions=True)
        await self.server.wait_closed()


async def echo_server(host: str) -> Outside:
    """A server outside the machine: echoes what it is sent, counting its connections."""

    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            with contextlib.suppress(OSError):
                while data := await r.read(64):
                    w.write(data)
                    await w.drain()
        finally:
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()

    def accepted(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        # A plain function: asyncio calls it within the accept, so no connection goes unowned.
        made.accepted += 1
        task = asyncio.create_task(echo(r, w))
        made.echoes.add(task)
        task.add_done_callback(made.echoes.discard)

    server = await asyncio.start_server(accepted, host, 0)
    made = Outside(server, server.sockets[0].getsockname()[1])
    return made


@pytest.mark.timeout(900)
async def test_a_failed_checkpoint_leaves_the_machine_running_as_it_was(
    stack: FleetClient, stack_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """runsc's checkpoint fails (its image path made a file, so it cannot write there): the
    pause is refused with runsc's reason, and the machine runs on with its process and PID and
    its daemon answering."""
    mid = await ready_gvisor(stack, "gv-pause-fails")
    home = stack_settings.data_path.resolve() / "machines" / mid / "home"
    await stack.write_file(mid, "counter.py", COUNTER)
    proc = await stack.start_process(mid, [sys.executable, "-I", "counter.py", "count"],
                                     tag="counter")  # fmt: skip
    await wait_until(lambda: (home / "count").exists(), timeout=180)
    real = Runsc.run_async

    async def broken(self: Runsc, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        if args and args[0] == "checkpoint":
            where = Path(args[args.index("--image-path") + 1])
            bad = where.with_name("not-a-directory")
            bad.write_text("")
            args = tuple(str(bad) if a == str(where) else a for a in args)
        return await real(self, *args, **kw)

    monkeypatch.setattr(Runsc, "run_async", broken)
    await stack.pause_machine(mid)
    got = await stack.wait_for(mid, ["ready", "paused", "failed"], timeout_s=300)
    assert got.status == "ready", got.status_reason
    assert "runs on as it was" in got.status_reason, got.status_reason
    monkeypatch.undo()
    before = (home / "count").read_text().split()[1]
    await wait_until(lambda: (home / "count").read_text().split()[1] != before, timeout=60)
    await wait_until(lambda: answers(stack, mid), timeout=120, every=0.5)
    listed = [(p.pid, p.state) for p in await stack.list_processes(mid) if p.tag == "counter"]
    assert listed == [(proc.pid, "running")]
    assert not await events_of(stack, mid, MachinePaused)


@pytest.mark.timeout(900)
async def test_a_pause_redone_after_its_provisioner_died_past_the_checkpoint_is_paused(
    stack: FleetClient, stack_settings: Settings
) -> None:
    """A provisioner killed once its pause's checkpoint had run (the sandbox saved and ended,
    nothing recorded) leaves a machine with an image and no sandbox; the pause its successor
    does again takes that image as the pause, and the resume goes on from it with the same
    process (found by the soak: the machine failed, 'sandbox is not running', its image left
    counted by no figure)."""
    mid = await ready_gvisor(stack, "gv-pause-twice")
    machine_dir = stack_settings.data_path.resolve() / "machines" / mid
    await stack.write_file(mid, "counter.py", COUNTER)
    await stack.start_process(mid, [sys.executable, "-I", "counter.py", "count"], tag="counter")
    count = machine_dir / "home" / "count"
    await wait_until(lambda: count.exists(), timeout=180)
    runsc = Runsc(stack_settings.runsc, stack_settings.gvisor_platform, stack_settings.data_path)
    nats_ports = {port for _, port in nats_servers(stack_settings.nats_url)}
    # The dead provisioner's pause: its checkpoint done, and nothing after it.
    await checkpoint_sandbox(runsc, machine_dir, mid, nats_ports, machine_dir / IMAGE_DIR)
    assert sandbox_pid(machine_dir) is None
    before = count.read_text().split()
    await stack.pause_machine(mid)  # as its successor does it again
    paused = await stack.wait_for(mid, ["paused", "ready", "failed"], timeout_s=300)
    assert paused.status == "paused", paused.status_reason
    assert paused.paused_bytes
    await stack.resume_machine(mid)
    ready = await stack.wait_for(mid, ["ready", "failed"], timeout_s=300)
    assert ready.status == "ready", ready.status_reason

    def counted_on() -> bool:
        pid, n, _ = count.read_text().split()
        return pid == before[0] and int(n) > int(before[1])

    await wait_until(counted_on, timeout=120, every=0.2)


def sandboxes_of(machine_dir: Path) -> list[int]:
    """Every runsc sandbox process started from the machine's bundle."""
    wants = f"--bundle={machine_dir / BUNDLE}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                if b"boot" in argv and any(a.startswith(wants) for a in argv):
                    found.append(int(entry.name))
    return found


@pytest.mark.timeout(900)
async def test_a_resume_redone_after_its_provisioner_died_restores_the_machine_once(
    stack: FleetClient, stack_settings: Settings
) -> None:
    """A provisioner killed while it restored a paused machine (its runsc restore done, or
    under way) leaves a sandbox running; the resume its successor does again takes that
    sandbox as the machine, rather than restore a second one from the same image beside it:
    two copies of every process, writing the same files (found by the soak, seed 3: a file's
    lines written twice after a provisioner's restart during a resume)."""
    mid = await ready_gvisor(stack, "gv-resume-twice")
    machine_dir = stack_settings.data_path.resolve() / "machines" / mid
    await stack.write_file(mid, "counter.py", COUNTER)
    await stack.start_process(mid, [sys.executable, "-I", "counter.py", "count"], tag="counter")
    await wait_until(lambda: (machine_dir / "home" / "count").exists(), timeout=180)
    await stack.pause_machine(mid)
    paused = await stack.wait_for(mid, ["paused", "ready", "failed"], timeout_s=300)
    assert paused.status == "paused", paused.status_reason
    runsc = Runsc(stack_settings.runsc, stack_settings.gvisor_platform, stack_settings.data_path)
    # The dead provisioner's restore: runsc's restore made the sandbox from the image, and
    # nothing after it (its pid never recorded).
    await start_sandbox(runsc, mid, machine_dir / BUNDLE, machine_dir / "daemon.log", mid, [],
                        verb=("restore", "--image-path", str(machine_dir / IMAGE_DIR)))  # fmt: skip
    (machine_dir / BUNDLE / PID_FILE).unlink()
    assert len(sandboxes_of(machine_dir)) == 1
    await stack.resume_machine(mid)  # as its successor does it again
    ready = await stack.wait_for(mid, ["ready", "failed"], timeout_s=300)
    assert ready.status == "ready", ready.status_reason
    await wait_until(lambda: answers(stack, mid), timeout=120, every=0.5)
    assert len(sandboxes_of(machine_dir)) == 1
    assert sandbox_pid(machine_dir) in sandboxes_of(machine_dir)
    assert not (machine_dir / IMAGE_DIR).exists()
