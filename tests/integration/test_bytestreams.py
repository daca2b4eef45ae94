"""Byte streams between a real daemon process and the platform over a real nats-server:
order, credit back-pressure, end and abort, a vanished peer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from pathlib import Path

import pytest

from base import procinfo
from contracts.bus import subjects
from contracts.daemon import rpc as d, streams as s
from contracts.errors import StreamAborted
from controlplane.bus import Bus
from controlplane.calls.byte_stream_join import PlatformStream, join
from controlplane.calls.daemon_client import DaemonClient
from tests.conftest import SpawnDaemon
from tests.integration.test_daemon import KEY, boot
from tests.waiters import wait_until


async def pipe(bus: Bus, mid: str, *argv: str, **join_kw: float) -> PlatformStream:
    opened = await DaemonClient(bus.nc, keys=KEY).call(
        mid, d.EXEC_PIPE, d.ExecPipeParams(command=list(argv))
    )
    return await join(bus.nc, mid, opened.stream_id, **join_kw)  # type: ignore[arg-type]


async def read_all(stream: PlatformStream) -> bytes:
    return b"".join([chunk async for chunk in stream])


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def wchar(pid: int) -> int:
    """Bytes the process has written so far."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar")


async def test_bytes_arrive_whole_and_in_order_both_ways(
    bus: Bus, spawn_daemon: SpawnDaemon
) -> None:
    daemon, _ = await boot(bus, spawn_daemon)
    payload = random.randbytes(3 * 1024 * 1024 + 17)
    async with await pipe(bus, daemon.machine_id, "cat") as stream:

        async def write() -> None:
            for at in range(0, len(payload), 100_000):  # not a multiple of the chunk size
                await stream.send(payload[at : at + 100_000])
            await stream.end()

        writer = asyncio.create_task(write())
        echoed = await asyncio.wait_for(read_all(stream), 30)
        await writer
        assert echoed == payload
        assert stream.end_code == 0


async def test_exit_code_travels_in_the_end_frame(bus: Bus, spawn_daemon: SpawnDaemon) -> None:
    daemon, _ = await boot(bus, spawn_daemon)
    argv = ("sh", "-c", "echo out; echo err >&2; exit 3")
    async with await pipe(bus, daemon.machine_id, *argv) as st:
        await st.end()
        assert await asyncio.wait_for(read_all(st), 15) == b"out\nerr\n"
        assert st.end_code == 3


async def test_a_slow_receiver_stops_the_process_on_the_machine(
    bus: Bus, spawn_daemon: SpawnDaemon
) -> None:
    """Credit: while nobody reads, the platform holds one window, and the writer on the machine
    is blocked, its output bounded by that window plus the pipe between it and the daemon."""
    daemon, _ = await boot(bus, spawn_daemon)
    window = 4 * s.DEFAULT_CHUNK
    async with await pipe(bus, daemon.machine_id, "yes", window=window) as stream:
        await wait_until(lambda: stream.buffered == window, timeout=15)
        (yes,) = await _wait_for_child(daemon.proc.pid)
        written = await _settled(lambda: wchar(yes))
        # The window, and a constant on the machine: the daemon's chunk in hand and its
        # reader's buffer (up to 128 KiB), the pipe (64 KiB) and yes's own buffer.
        assert written <= window + 512 * 1024
        assert stream.buffered == window  # the daemon never sent beyond its credit
        got = 0
        while got < 20 * window:  # reading lets it go on, and the window stays the bound
            got += len(await stream.receive())
            assert stream.buffered <= window
        assert wchar(yes) > written


async def _wait_for_child(daemon_pid: int) -> list[int]:
    await wait_until(lambda: len(children_of(daemon_pid)) == 1, timeout=10)
    return children_of(daemon_pid)


async def _settled(sample: object) -> int:
    """The value once two samples 0.2 s apart agree (the writer is blocked)."""
    assert callable(sample)
    last = -1
    async with asyncio.timeout(10):
        while (now := sample()) != last:
            last = now
            await asyncio.sleep(0.2)
    return int(last)


async def test_aborting_kills_the_process_and_the_daemon_forgets_the_stream(
    bus: Bus, spawn_daemon: SpawnDaemon
) -> None:
    daemon, _ = await boot(bus, spawn_daemon)
    stream = await pipe(bus, daemon.machine_id, "sleep", "1000")
    (sleeper,) = await _wait_for_child(daemon.proc.pid)
    await stream.abort("the user pressed Ctrl-C")
    await wait_until(lambda: procinfo.state(sleeper) in (None, "Z"), timeout=10)
    with pytest.raises(StreamAborted, match="Ctrl-C"):
        await stream.receive()
    await stream.aclose()
    # A frame for the forgotten stream is answered by an abort, not silence.
    again = await join(bus.nc, daemon.machine_id, stream.stream_id)
    with pytest.raises(StreamAborted, match="no such stream"):
        await asyncio.wait_for(again.receive(), 10)
    await again.aclose()


async def test_a_vanished_daemon_aborts_the_platforms_side(
    bus: Bus, spawn_daemon: SpawnDaemon
) -> None:
    daemon, _ = await boot(bus, spawn_daemon)
    stream = await pipe(bus, daemon.machine_id, "sleep", "1000", peer_timeout_s=1.0,
                        keepalive_s=0.2)  # fmt: skip
    (sleeper,) = await _wait_for_child(daemon.proc.pid)
    os.killpg(daemon.proc.pid, signal.SIGKILL)
    with pytest.raises(StreamAborted, match="silent"):
        await asyncio.wait_for(stream.receive(), 10)
    await stream.aclose()
    # The command ran in a session of its own, which the daemon's group kill did not reach:
    # ended here, as a machine's end would (the suite leaves no process behind).
    with contextlib.suppress(ProcessLookupError):
        os.kill(sleeper, signal.SIGKILL)


async def test_a_forged_daemon_side_cannot_overrun_the_platforms_buffer(bus: Bus) -> None:
    """Whoever publishes on a stream's machine side (here, with the open test server, the test
    itself) cannot make the platform buffer more than its window: the stream aborts."""
    mid, sid = "m-" + "0" * 16, "ab" * 16
    stream = await join(bus.nc, mid, sid, window=s.DEFAULT_CHUNK)
    out = subjects.stream_from_machine(mid, sid)
    await bus.nc.publish(out, s.encode_data(0, b"x" * s.DEFAULT_CHUNK))
    await bus.nc.publish(out, s.encode_data(1, b"y"))
    await wait_until(lambda: stream.error is not None, timeout=10)
    with pytest.raises(StreamAborted, match="credit"):
        await stream.receive()
    assert stream.buffered <= s.DEFAULT_CHUNK
    await stream.aclose()
