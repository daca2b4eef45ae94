"""Interactive sessions on a real daemon process, through its byte streams (no gateway): a real
shell on a PTY, Ctrl-C, scrollback on reattach, exit codes, a flood that grows nothing."""

from __future__ import annotations

import asyncio
import os
import signal

from contracts.daemon import rpc as d, sessions as ss
from contracts.rpc.jsonrpc import NoParams
from controlplane.bus import Bus
from controlplane.calls.byte_stream_join import PlatformStream, join
from controlplane.calls.daemon_client import DaemonClient
from tests.conftest import SpawnDaemon
from tests.integration.test_daemon import KEY, boot
from tests.stop_checks import host_pids_running, unique_sleep
from tests.waiters import wait_until


class Viewer:
    """The platform's side of an attach: the terminal text so far, notices, the end code."""

    def __init__(self, stream: PlatformStream) -> None:
        self.stream = stream
        self.reader = ss.RecordReader()
        self.text = b""
        self.errors = b""  # a pipe session's stderr
        self.notices: list[ss.Notice] = []

    async def until(self, wanted: bytes, timeout: float = 15) -> None:
        async with asyncio.timeout(timeout):
            while wanted not in self.text:
                chunk = await self.stream.receive()
                assert chunk, f"ended before {wanted!r}; got {self.text[-300:]!r}"
                self._take(chunk)

    async def to_end(self, timeout: float = 15) -> int | None:
        async with asyncio.timeout(timeout):
            while chunk := await self.stream.receive():
                self._take(chunk)
        return self.stream.end_code

    def _take(self, chunk: bytes) -> None:
        for kind, payload in self.reader.feed(chunk):
            if kind is ss.RecordKind.OUTPUT:
                self.text += payload
            elif kind is ss.RecordKind.STDERR:
                self.errors += payload
            else:
                self.notices.append(ss.decode_notice(payload))


async def attach(bus: Bus, client: DaemonClient, mid: str, sid: str) -> Viewer:
    opened = await client.call(mid, d.SESSION_ATTACH, ss.SessionAttachParams(session_id=sid))
    return Viewer(await join(bus.nc, mid, opened.stream_id))


async def test_a_shell_echoes_stops_sleep_on_ctrl_c_and_replays_its_scrollback(
    bus: Bus, spawn_daemon: SpawnDaemon
) -> None:
    daemon, _ = await boot(bus, spawn_daemon)
    mid, client = daemon.machine_id, DaemonClient(bus.nc, keys=KEY)
    info = await client.call(mid, d.SESSION_OPEN,
                             ss.SessionOpenParams(command=["bash", "--norc", "-i"]))  # fmt: skip
    v = await attach(bus, client, mid, info.session_id)
    await v.stream.send(b"echo hel''lo\n")
    await v.until(b"hello")
    sleep = unique_sleep()
    await v.stream.send(f"{' '.join(sleep)}\n".encode())
    await wait_until(lambda: bool(host_pids_running(sleep)))
    await v.stream.send(b"\x03")  # Ctrl-C: SIGINT to the foreground group, sleep dies
    await wait_until(lambda: not host_pids_running(sleep))
    await v.stream.send(b"echo after-$?\n")
    await v.until(b"after-130")
    await v.stream.end()  # detach; the session goes on
    await v.stream.aclose()
    again = await attach(bus, client, mid, info.session_id)
    await again.until(b"after-130")  # the scrollback first
    await again.stream.send(b"exit 7\n")
    assert await again.to_end() == 7
    listed = (await client.call(mid, d.SESSION_LIST, NoParams())).sessions
    assert [(s.session_id, s.running, s.exit_code) for s in listed] == [(info.session_id, False, 7)]
    await again.stream.aclose()


async def test_a_pipe_session_keeps_stderr_apart_reads_stdin_to_its_end_and_times_out(
    bus: Bus, spawn_daemon: SpawnDaemon
) -> None:
    daemon, _ = await boot(bus, spawn_daemon)
    mid, client = daemon.machine_id, DaemonClient(bus.nc, keys=KEY)
    script = "tty || true; cat; echo oops >&2; exit 3"
    info = await client.call(mid, d.SESSION_OPEN, ss.SessionOpenParams(
        command=["sh", "-c", script], pty=False))  # fmt: skip
    assert not info.pty
    v = await attach(bus, client, mid, info.session_id)
    sid = info.session_id
    for data, eof in ((b"one ", False), (b"two", True)):  # cat ends at the end of its stdin
        written = await client.call(
            mid, d.SESSION_WRITE, ss.SessionWriteParams(session_id=sid, data=data, eof=eof)
        )
        assert written.written == len(data)
    assert await v.to_end() == 3
    assert (v.text, v.errors) == (b"not a tty\none two", b"oops\n")
    late = ss.SessionWriteParams(session_id=sid, data=b"x")  # the command is gone: taken by none
    assert (await client.call(mid, d.SESSION_WRITE, late)).written == 0
    await v.stream.aclose()
    sleep = unique_sleep()
    quiet = await client.call(mid, d.SESSION_OPEN, ss.SessionOpenParams(
        command=sleep, pty=False, stdin=False, timeout_s=0.5))  # fmt: skip
    timed = await attach(bus, client, mid, quiet.session_id)
    assert await timed.to_end() == 137  # SIGKILL at its timeout
    await timed.stream.aclose()
    ref = ss.SessionSignalParams(session_id=quiet.session_id, signal=15)
    assert not (await client.call(mid, d.SESSION_SIGNAL, ref)).signaled
    deaf_argv = unique_sleep()
    deaf = await client.call(mid, d.SESSION_OPEN, ss.SessionOpenParams(
        command=deaf_argv, pty=False))  # fmt: skip
    flood = ss.SessionWriteParams(session_id=deaf.session_id, data=b"x" * 512 * 1024)
    taken = (await client.call(mid, d.SESSION_WRITE, flood)).written  # a full pipe: no hang
    assert 0 < taken < len(flood.data)
    stuck = await client.call(mid, d.SESSION_OPEN, ss.SessionOpenParams(
        command=["sh", "-c", "trap 'exit 9' TERM; cat"], pty=False))  # fmt: skip
    term = await attach(bus, client, mid, stuck.session_id)
    ref = ss.SessionSignalParams(session_id=stuck.session_id, signal=15)
    assert (await client.call(mid, d.SESSION_SIGNAL, ref)).signaled
    assert await term.to_end() == 9
    await term.stream.aclose()
    os.killpg(daemon.proc.pid, signal.SIGKILL)  # no close_all: its commands get a hangup
    await wait_until(lambda: not host_pids_running(deaf_argv), timeout=15)


async def test_stty_size_follows_a_resize_and_two_viewers_see_the_same(
    bus: Bus, spawn_daemon: SpawnDaemon
) -> None:
    daemon, _ = await boot(bus, spawn_daemon)
    mid, client = daemon.machine_id, DaemonClient(bus.nc, keys=KEY)
    info = await client.call(mid, d.SESSION_OPEN, ss.SessionOpenParams(
        command=["bash", "--norc", "-i"], cols=100, rows=30))  # fmt: skip
    one = await attach(bus, client, mid, info.session_id)
    two = await attach(bus, client, mid, info.session_id)
    await one.stream.send(b"stty size\n")
    await one.until(b"30 100")
    resize = ss.SessionResizeParams(session_id=info.session_id, cols=132, rows=43)
    await client.call(mid, d.SESSION_RESIZE, resize)
    await two.stream.send(b"stty size\n")
    for v in (one, two):
        await v.until(b"43 132")
    closed = await client.call(mid, d.SESSION_CLOSE, ss.SessionRef(session_id=info.session_id))
    assert closed.closed
    for v in (one, two):  # a closed session's hangup ends every viewer
        await v.to_end()
        await v.stream.aclose()


async def test_a_viewer_that_reads_nothing_holds_no_one_up_and_is_told_what_it_missed(
    bus: Bus, spawn_daemon: SpawnDaemon
) -> None:
    daemon, _ = await boot(bus, spawn_daemon)
    mid, client = daemon.machine_id, DaemonClient(bus.nc, keys=KEY)
    info = await client.call(mid, d.SESSION_OPEN, ss.SessionOpenParams(command=["yes"]))
    reader = await attach(bus, client, mid, info.session_id)
    stalled = await attach(bus, client, mid, info.session_id)  # never reads, until the end
    async with asyncio.timeout(60):
        while len(reader.text) < 4 * ss.SCROLLBACK_BYTES:  # well past what it may hold up
            reader._take(await reader.stream.receive())
    assert stalled.stream.buffered <= ss.ATTACH_WINDOW  # its share: one window, no more
    await reader.stream.send(b"\x03")  # Ctrl-C: yes ends; each viewer drains at its own pace
    assert await stalled.to_end(timeout=60) == 130
    [missed] = stalled.notices
    # It got what fit in its window and the scrollback, and was told about the rest.
    assert missed.bytes > ss.SCROLLBACK_BYTES
    assert len(stalled.text) + missed.bytes >= 4 * ss.SCROLLBACK_BYTES
    for v in (reader, stalled):
        await v.stream.aclose()
