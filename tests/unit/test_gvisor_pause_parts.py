"""The pure parts of a gvisor pause: reading gVisor's /proc/net/tcp (which endpoints refuse a
checkpoint), and the daemon's reconnect wait while parked and after. On real runsc sandboxes:
tests/integration/test_gvisor_pause.py."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import urlparse

from daemon.park import PARKED_WAIT_S, Parking
from providers.gvisor import Runsc
from providers.gvisor_pause import _endpoint, connections

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:E28C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1
   1: 0F02000A:9C40 010011AC:108E 01 00000000:00000000 00:00000000 00000000  2000        0 2
   2: 0F02000A:9C41 010011AC:108E 07 00000000:00000000 00:00000000 00000000  2000        0 3
  sl  local_address                         remote_address                        st
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A
"""


class CannedRunsc(Runsc):
    """runsc whose ``exec cat`` answers ``out`` (the command line is recorded)."""

    def __init__(self, out: str) -> None:
        super().__init__("runsc", "ptrace", Path("/nonexistent"))
        self.out = out
        self.asked: list[tuple[str, ...]] = []

    def run(self, *args: str, inside: int | None = None,
            timeout_s: float = 60) -> subprocess.CompletedProcess[str]:  # fmt: skip
        self.asked.append(args)
        return subprocess.CompletedProcess(list(args), 0, self.out, "")


def test_every_tcp_endpoint_but_a_closed_one_is_named_listeners_by_their_own_address() -> None:
    runsc = CannedRunsc(TCP)
    assert connections(runsc, "m-1", 42) == [
        ("127.0.0.1", 0xE28C, True),
        ("172.17.0.1", 4238, False),
        ("::1", 8080, True),
    ]
    assert runsc.asked[0][:3] == ("exec", "--user", "0:0")  # read as root inside


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
