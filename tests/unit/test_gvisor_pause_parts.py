"""The pure parts of a gvisor pause: reading gVisor's /proc/net/tcp (which endpoints refuse a
checkpoint) by a program of the platform's, bounded, and the daemon's reconnect wait while
parked and after. On real runsc sandboxes: tests/integration/test_gvisor_pause.py."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from base.bounded_output import Completed
from contracts.errors import ProviderError
from daemon.park import PARKED_WAIT_S, Parking
from providers.gvisor import Runsc, container_id
from providers.gvisor_inside import HOST_CAT
from providers.gvisor_pause import _endpoint, connections
from providers.local_image import RUNTIME_DIR
from providers.nodump_loader import SANDBOX_LOADER

TABLES = ("/proc/net/tcp", "/proc/net/tcp6")

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:E28C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1
   1: 0F02000A:9C40 010011AC:108E 01 00000000:00000000 00:00000000 00000000  2000        0 2
   2: 0F02000A:9C41 010011AC:108E 07 00000000:00000000 00:00000000 00000000  2000        0 3
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A
"""


class CannedRunsc(Runsc):
    """runsc whose ``exec`` answers ``out`` (the command line is recorded)."""

    def __init__(self, out: str, truncated: bool = False) -> None:
        super().__init__("runsc", "ptrace", Path("/nonexistent"))
        self.out = out
        self.truncated = truncated
        self.asked: list[tuple[str, ...]] = []

    def run(self, *args: str, inside: int | None = None, timeout_s: float = 60) -> Completed:
        self.asked.append(args)
        return Completed(list(args), 0, self.out, "", self.truncated)


#: ``sandbox(image)``: the host pid of a stand-in for runsc's sandbox process, its command line
#: naming a bundle whose spec mounts the platform's runtime (a machine of an image) or not.
Sandbox = Callable[[bool], int]


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    started: list[subprocess.Popen[bytes]] = []

    def start(image: bool) -> int:
        bundle = tmp_path / f"bundle-{len(started)}"
        bundle.mkdir()
        mounts: list[dict[str, str]] = [{"destination": "/proc", "type": "proc"}]
        if image:
            mounts.append({"destination": f"{RUNTIME_DIR}/python", "type": "bind"})
        (bundle / "config.json").write_text(json.dumps({"mounts": mounts}))
        script = "import time; print('up', flush=True); time.sleep(600)"
        argv = [sys.executable, "-c", script, "boot", f"--bundle={bundle}"]
        started.append(subprocess.Popen(argv, stdout=subprocess.PIPE))
        assert started[-1].stdout is not None
        started[-1].stdout.readline()  # its command line is in place (exec has finished)
        return started[-1].pid

    yield start
    for proc in started:
        proc.kill()
        proc.communicate()


def test_every_tcp_endpoint_but_a_closed_one_is_named_listeners_by_their_own_address(
    sandbox: Sandbox,
) -> None:
    runsc = CannedRunsc(TCP)
    assert connections(runsc, "m-1", sandbox(False)) == [
        ("127.0.0.1", 0xE28C, True),
        ("172.17.0.1", 4238, False),
        ("::1", 8080, True),
    ]
    # Read as root inside, by the host's own cat (read-only /usr), never a "cat" on its PATH.
    assert runsc.asked == [("exec", "--user", "0:0", container_id("m-1"), HOST_CAT, *TABLES)]


def test_in_a_machine_of_an_image_the_platforms_python_reads_the_tables(
    sandbox: Sandbox,
) -> None:
    """The image's /usr is root's inside (its /usr/local/sbin first on its PATH)."""
    runsc = CannedRunsc(TCP)
    assert len(connections(runsc, "m-1", sandbox(True), "fleet-pool-1")) == 3
    (asked,) = runsc.asked
    assert asked[:4] == ("exec", "--user", "0:0", "fleet-pool-1")
    program = asked[4:]
    assert program[0] == SANDBOX_LOADER
    assert program[program.index("--library-path") + 2].startswith(f"{RUNTIME_DIR}/python/")
    assert program[-2:] == TABLES


def test_a_listing_cut_at_runscs_cap_is_no_listing(sandbox: Sandbox) -> None:
    with pytest.raises(ProviderError, match="too many to pause"):
        connections(CannedRunsc(TCP, truncated=True), "m-1", sandbox(False))


def test_runsc_keeps_at_most_its_cap_of_what_a_command_writes(tmp_path: Path) -> None:
    """runsc's ``exec`` passes on what the machine's process writes: a flood of it is read
    and dropped past the cap, and runsc (here a stand-in) runs to its end."""
    flood = tmp_path / "runsc"
    flood.write_text("#!/bin/sh\nhead -c 50M /dev/zero && echo said >&2\n")
    flood.chmod(0o755)
    got = Runsc(str(flood), "ptrace", tmp_path).run("exec", "--user", "0:0", "c", "cat")
    assert (got.returncode, got.stderr, got.truncated) == (0, "said\n", True)
    assert got.stdout == "\0" * (1 << 20)


def test_addresses_are_read_in_the_kernels_byte_order() -> None:
    assert _endpoint("0100007F:0050") == ("127.0.0.1", 80)
    assert _endpoint("00000000000000000000000001000000:1F90") == ("::1", 8080)


def test_a_parked_daemon_waits_for_its_resume_then_reconnects_at_once() -> None:
    parking = Parking()
    parking.wait_s = 1.5
    assert parking.choose([], {}) == (None, 0.0)  # the first try after a drop: at once
    assert parking.choose([], {})[1] > 1.0  # then nats-py's wait between tries
    parking.parked = True
    assert parking.choose([], {}) == (None, PARKED_WAIT_S)


def test_a_reconnect_tries_each_server_of_a_cluster_in_turn() -> None:
    """nats-py takes the handler's None for "the pool's first server", every time: a daemon of
    a cluster whose first node died would try that node for ever (the HA chaos test saw it)."""
    from nats.aio.client import Server

    servers = [Server(uri=urlparse(f"nats://127.0.0.1:{port}")) for port in (4222, 4223, 4224)]
    parking = Parking()
    picked = [parking.choose(servers, {})[0] for _ in range(6)]
    assert all(p is not None for p in picked)
    ports = [p.uri.port for p in picked if p is not None]
    assert sorted(ports[:3]) == [4222, 4223, 4224]  # each node once before any again
    assert ports[3:] == ports[:3]
    assert parking.choose([], {})[0] is None  # nothing to pick from: nats-py's own
