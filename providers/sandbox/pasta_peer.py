"""Which machine's pasta a TCP connection on this host comes from.

A gvisor machine's stack has a loopback of its own, so the egress proxy cannot listen inside
its namespace as it does for the others (providers/egress/proxy.py): it listens on the host, at
the address the machine reaches NATS at. Every connection a local machine makes leaves through
its pasta, as a socket pasta holds on the host; the platform spawned that pasta and recorded
which process it is (its pid and start time: providers/sandbox/netns.py ``recorded_pasta``), so the
socket's holder says which machine connected. Nothing the machine sends is trusted for that,
nor anything a process can set about itself (its environment): a connection no recorded pasta
holds (a container on a bridge, a process of the host) is nobody's.

The kernel gives the socket whose ends are the connection's, seen from the other side, by its
four addresses (providers/sandbox/sock_diag.py); the recorded pasta whose descriptors hold it is the
machine's. The pastas are read those that held fewest descriptors first, and only until every
socket asked for is found: a machine that holds many connections makes its own lookups dear,
not another's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from base import procinfo
from providers.sandbox.sock_diag import Endpoint, SockDiag, TcpSocket

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
#: A recorded pasta: its pid and start time.
Pasta = tuple[int, int]


def peer_socket(
    diag: SockDiag, peer: Endpoint, door: Endpoint, hosts: Collection[Address] = ()
) -> TcpSocket | None:
    """The socket of this host at the other end of a connection from ``peer`` to ``door``.

    ``hosts``: ``peer`` is an address of this host, which the host may have rewritten (a
    pasta socket bound to a bridge's address is seen from another of the host's), so the
    socket to ``door`` from ``peer``'s port at one of ``hosts`` (the host's own addresses) is
    the one, if only one has it. Only for a host address: a connection from anywhere else (a
    container) could pick the port of a pasta's connection, but never complete a handshake
    from an address of the host's."""
    exact = diag.tcp(peer, door)
    if exact is not None or not hosts:
        return exact
    found = {s for h in hosts if (s := diag.tcp((str(h), peer[1]), door)) is not None}
    return found.pop() if len(found) == 1 else None


#: A pasta holding more descriptors than this when last read is read at most once every
#: ``LARGE_EVERY_S``: the cost of its reads is its machine's, in time, not the host's, in CPU.
LARGE = 1024
LARGE_EVERY_S = 1.0


@dataclass(frozen=True)
class Found:
    #: Socket inode -> the name of the pasta that holds it.
    held: dict[int, str]
    #: Seconds until a large pasta that was not read now may be read (0: every one was).
    deferred_s: float


@dataclass
class Holders:
    """Which recorded pasta holds a socket, found by reading pastas' descriptors, those that
    held fewest when last read first, a large one not more often than ``LARGE_EVERY_S``. Used
    from one thread at a time."""

    #: Each pasta's (pid's) descriptors, and when (monotonic), when it was last read.
    _read: dict[int, tuple[int, float]] = field(default_factory=dict)

    def find(self, inodes: Collection[int], pastas: Mapping[str, list[Pasta]],
             now: float) -> Found:  # fmt: skip
        """Which of ``pastas`` (name -> its recorded pastas) holds each of socket ``inodes``
        (those none holds left out, as far as the pastas read now say)."""
        order = sorted((self._read.get(pid, (0, 0.0)), name, pid, ticks)
                       for name, found in pastas.items() for pid, ticks in found)  # fmt: skip
        wanted, held, deferred = set(inodes), {}, 0.0
        for (size, last), name, pid, ticks in order:
            if not wanted:
                break
            if size > LARGE and now - last < LARGE_EVERY_S:
                deferred = max(deferred, LARGE_EVERY_S - (now - last))
                continue
            for inode in self._sockets(pid, ticks, now) & wanted:
                held[inode] = name
                wanted.discard(inode)
        live = {pid for _, _, pid, _ in order}
        for pid in [p for p in self._read if p not in live]:
            del self._read[pid]
        return Found(held, deferred if wanted else 0.0)

    def _sockets(self, pid: int, ticks: int, now: float) -> set[int]:
        """The inodes of the sockets pasta ``pid`` holds (none when it is not that pasta)."""
        try:
            links = procinfo.fd_links(pid)
        except OSError:
            return set()
        # Still that pasta after the read: what was read was its (a pid another process took
        # since would have another start time).
        if procinfo.start_ticks(pid) != ticks:
            return set()
        self._read[pid] = (len(links), now)
        return {i for link in links.values() if (i := _socket_inode(link)) is not None}


def _socket_inode(link: str) -> int | None:
    """The inode of ``socket:[N]``, a descriptor's link; None for anything else."""
    if link.startswith("socket:[") and link.endswith("]"):
        return int(link[8:-1])
    return None
