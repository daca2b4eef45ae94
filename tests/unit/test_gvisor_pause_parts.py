"""The parts of a gvisor pause that need no sandbox: whether the daemon has let its NATS
connection go, read on the host from pasta's own sockets (nothing runs in the machine for it);
runsc's output read bounded; and the daemon's reconnect wait while parked and after. On real
runsc sandboxes: tests/integration/test_gvisor_pause.py."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from base import procinfo
from base.retry import Backoff, retry_until
from daemon.supervision.park import Parked, Parking
from providers.gvisor import BUNDLE, Runsc
from providers.gvisor.pause import NETNS_HOLDER, held_netns, hold_netns, let_netns_go, nats_held
from providers.sandbox import NETNS_OF, pasta_record

#: Holds a connection to 127.0.0.1:argv[1] until its stdin ends (a stand-in for a machine's
#: pasta, marked as the machine's by its environment).
HOLDER = r"""
import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
print('connected', flush=True)
sys.stdin.read()
"""


@pytest.fixture
def nats() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server


def test_the_daemons_nats_connection_is_seen_from_pastas_side_until_it_goes(
    nats: socket.socket, tmp_path: Path
) -> None:
    port = nats.getsockname()[1]
    holder, marked = (subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        env={NETNS_OF: "m-held", "PATH": "/usr/bin:/bin"},
    ) for _ in range(2))  # fmt: skip
    try:
        for p in (holder, marked):
            assert p.stdout is not None
            assert p.stdout.readline() == b"connected\n"
        # The holder as the platform records the pasta it spawned; the other only marked.
        record = pasta_record(tmp_path, "m-held")
        record.parent.mkdir()
        record.write_text(f"{holder.pid} {procinfo.start_ticks(holder.pid)}\n")
        assert nats_held(tmp_path, {"m-held"}, {port}) == 1
        assert nats_held(tmp_path, {"m-held"}, {port + 1}) == 0  # another port: not NATS
        assert nats_held(tmp_path, {"m-other"}, {port}) == 0  # another machine's pasta
    finally:
        holder.communicate(b"")
        marked.communicate(b"")
    assert nats_held(tmp_path, {"m-held"}, {port}) == 0


async def test_a_kept_namespace_is_the_holders_its_pause_started_never_a_later_pids(
    tmp_path: Path,
) -> None:
    """A resume restores the machine into the namespace of the process its pause left holding
    it: that very process (its start time recorded), never whatever process has its pid later
    and marks itself as the machine's (a local user's, whose namespace it would be)."""
    machine_dir = tmp_path / "m-held"
    (machine_dir / BUNDLE).mkdir(parents=True)
    impostor = await asyncio.create_subprocess_exec(
        "sleep", "600", env={NETNS_OF: "m-held", "PATH": "/usr/bin:/bin"}
    )
    began = procinfo.start_ticks(impostor.pid)

    async def a_tick_later() -> bool:  # the holder starts after it, as a reused pid's would
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return began is not None and uptime * os.sysconf("SC_CLK_TCK") > began + 1

    async with asyncio.timeout(10):
        await retry_until(a_tick_later, backoff=Backoff(0.005, 0.005, jitter=False))
    await hold_netns(machine_dir, "m-held", os.getpid())  # our own namespace stands for it
    try:
        holder = held_netns(machine_dir, "m-held")
        assert holder is not None
        # The holder's pid taken over by the impostor, the record otherwise as the pause left it.
        kept = machine_dir / BUNDLE / NETNS_HOLDER
        written = kept.read_text().split()
        kept.write_text(" ".join([str(impostor.pid), *written[1:]]) + "\n")
        assert held_netns(machine_dir, "m-held") is None
        kept.write_text(" ".join(written) + "\n")
        assert held_netns(machine_dir, "m-held") == holder
    finally:
        let_netns_go(machine_dir, "m-held")
        impostor.kill()
        await impostor.wait()
    assert held_netns(machine_dir, "m-held") is None


def test_runsc_keeps_at_most_its_cap_of_what_a_command_writes(tmp_path: Path) -> None:
    """runsc's ``exec`` passes on what the machine's process writes: a flood of it is read
    and dropped past the cap, and runsc (here a stand-in) runs to its end."""
    flood = tmp_path / "runsc"
    flood.write_text("#!/bin/sh\nhead -c 50M /dev/zero && echo said >&2\n")
    flood.chmod(0o755)
    got = Runsc(str(flood), "ptrace", tmp_path).run("exec", "--user", "0:0", "c", "cat")
    assert (got.returncode, got.stderr, got.truncated) == (0, "said\n", True)
    assert got.stdout == "\0" * (1 << 20)


async def _no_error(_: Exception) -> None:
    raise AssertionError("no error is logged here")


async def test_a_parked_daemon_waits_for_its_resume_then_reconnects_at_once() -> None:
    parking = Parking(1.5, _no_error)
    assert parking.choose([], {}) == (None, 0.0)  # the first try after a drop: at once
    assert parking.choose([], {})[1] > 1.0  # then nats-py's wait between tries
    parking.parked = True
    parking._unparked.clear()  # as park() leaves it (on 3.13 a set event let on_error end at once)
    with pytest.raises(Parked) as held:
        parking.choose([], {})
    waiting = asyncio.create_task(parking.on_error(held.value))  # nats-py's loop, held there
    await asyncio.sleep(0)
    assert not waiting.done()
    assert await parking.unpark()
    await asyncio.wait_for(waiting, 5)
    assert parking.choose([], {}) == (None, 0.0)  # the resume: at once


def test_a_reconnect_tries_each_server_of_a_cluster_in_turn() -> None:
    """nats-py takes the handler's None for "the pool's first server", every time: a daemon of
    a cluster whose first node died would try that node for ever (the HA chaos test saw it)."""
    from nats.aio.client import Server

    servers = [Server(uri=urlparse(f"nats://127.0.0.1:{port}")) for port in (4222, 4223, 4224)]
    parking = Parking(0.0, _no_error)
    picked = [parking.choose(servers, {})[0] for _ in range(6)]
    assert all(p is not None for p in picked)
    ports = [p.uri.port for p in picked if p is not None]
    assert sorted(ports[:3]) == [4222, 4223, 4224]  # each node once before any again
    assert ports[3:] == ports[:3]
    assert parking.choose([], {})[0] is None  # nothing to pick from: nats-py's own
