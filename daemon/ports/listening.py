"""The machine's listening ports, read from ``/proc/net/tcp`` and ``/proc/net/tcp6``.

Only sockets a tunnel can reach are listed: in LISTEN, bound to the loopback or to every
address. The daemon reads its own network namespace's tables, which (with a namespace per
machine) are exactly the machine's sockets.

Only the sockets of the machine's own programs are listed, told apart by who holds each one
(its inode among a process's descriptors), never by a port a user's server could use too. The
platform's are not: the daemon's own (its control server), its ancestors' (the supervisor, the
sandbox's init), those held from outside the machine's processes (the DNS proxy's resolver,
the way to NATS), which no process of the machine holds, and those a code context's kernel
opened as it started (ZMQ's channels and its IOPub pipe: ``started_with``), before any code of
the user's ran in it. A socket no readable process holds is listed only if a process the daemon
may not look into (another user's, or one that made itself non-dumpable) could hold it: one of
the socket's owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from base import procinfo
from contracts.errors import NotSupported
from contracts.ports import Family, ListeningPort, PortList

#: ``st`` of a socket in LISTEN (include/net/tcp_states.h).
_LISTEN = "0A"
_TABLES: tuple[tuple[str, Family], ...] = (("tcp", "ipv4"), ("tcp6", "ipv6"))


def decode_address(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The kernel prints each 32-bit word of the address in host byte order, as hex."""
    raw = bytes.fromhex(hex_addr)
    words = b"".join(
        int.from_bytes(raw[i : i + 4], "big").to_bytes(4, sys.byteorder)
        for i in range(0, len(raw), 4)
    )
    return ipaddress.ip_address(words)


def reachable(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Bound where a connection to the loopback gets it: the loopback itself, or any address."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_loopback or addr.is_unspecified


class Listener(NamedTuple):
    port: ListeningPort
    #: The socket's owner (as this namespace maps it) and inode.
    uid: int
    inode: int


def parse_listeners(text: str, family: Family) -> list[Listener]:
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != _LISTEN:
            continue
        hex_addr, _, hex_port = fields[1].partition(":")
        addr = decode_address(hex_addr)
        if reachable(addr):
            port = ListeningPort(port=int(hex_port, 16), address=str(addr), family=family)
            found.append(Listener(port, int(fields[7]), int(fields[9])))
    return found


def parse_table(text: str, family: Family) -> list[ListeningPort]:
    return [listener.port for listener in parse_listeners(text, family)]


@dataclass
class Holders:
    """Who holds the machine's sockets, as far as the daemon may see."""

    #: Inodes of the sockets the machine's own programs hold...
    programs: set[int] = field(default_factory=set)
    #: ...and of those the platform's processes hold (those it may read: the daemon's).
    platform: set[int] = field(default_factory=set)
    #: Owners of the machine's processes (not the platform's) whose descriptors it may not read.
    unseen_uids: set[int] = field(default_factory=set)

    def of_programs(self, listener: Listener) -> bool:
        if listener.inode in self.programs:
            return True
        return listener.inode not in self.platform and listener.uid in self.unseen_uids


def platform_pids(me: int) -> set[int]:
    """The daemon and its ancestors (the supervisor, the sandbox's init): the platform's."""
    pids = set()
    pid: int | None = me
    while pid and pid not in pids:
        pids.add(pid)
        pid = procinfo.parent(pid)
    return pids


def holders(proc: Path = Path("/proc"), me: int | None = None) -> Holders:
    """Who holds the sockets of the machine's processes (``me``: the daemon)."""
    platform = platform_pids(os.getpid() if me is None else me)
    found = Holders()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        ours = int(entry.name) in platform
        try:
            fds = list((entry / "fd").iterdir())
        except PermissionError:
            uid = None if ours else _uid_of(entry)
            if uid is not None:
                found.unseen_uids.add(uid)
            continue
        except OSError:  # it ended
            continue
        (found.platform if ours else found.programs).update(_socket_inodes(fds))
    return found


def _uid_of(process: Path) -> int | None:
    try:
        status = (process / "status").read_text()
    except OSError:
        return None
    uids = [line.split()[1] for line in status.splitlines() if line.startswith("Uid:")]
    return int(uids[0]) if uids else None


def _socket_inodes(fds: list[Path]) -> set[int]:
    inodes = set()
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def listener_inodes(proc_net: Path = Path("/proc/net")) -> set[int]:
    """The inodes of the sockets listening where a tunnel reaches them (``parse_listeners``)."""
    found: set[int] = set()
    for name, family in _TABLES:
        with contextlib.suppress(FileNotFoundError):
            found |= {lst.inode for lst in parse_listeners((proc_net / name).read_text(), family)}
    return found


def started_with(before: set[int], pid: int | None, proc_net: Path = Path("/proc/net"),
                 proc: Path = Path("/proc")) -> frozenset[int]:  # fmt: skip
    """The listening sockets process ``pid`` opened as the platform started it: those that
    appeared since ``before`` (read just before its start) that no readable process but
    ``pid`` holds. A kernel of the platform's runtime is not readable (non-dumpable), one of
    the machine's own Python is: either way, a server another process of the machine started
    meanwhile is not taken for one of its own."""
    fresh = listener_inodes(proc_net) - before
    if not fresh:
        return frozenset()
    for entry in proc.iterdir():
        if entry.name.isdigit() and int(entry.name) != pid:
            with contextlib.suppress(OSError):  # unreadable, or it ended
                fresh -= _socket_inodes(list((entry / "fd").iterdir()))
    return frozenset(fresh)


def listening_ports(proc_net: Path = Path("/proc/net"), held: Holders | None = None,
                    started: frozenset[int] = frozenset()) -> PortList:  # fmt: skip
    """The ports the machine's programs listen on (``held``: who holds which socket, else
    read from /proc), but for the sockets ``started`` (the kernels' own: ``started_with``)."""
    held = holders() if held is None else held
    ports: dict[tuple[int, Family], ListeningPort] = {}
    read_any = False
    for name, family in _TABLES:
        try:
            text = (proc_net / name).read_text()
        except FileNotFoundError:  # no IPv6 in this kernel or namespace
            continue
        read_any = True
        for listener in parse_listeners(text, family):
            p = listener.port
            if listener.inode not in started and held.of_programs(listener):
                # Several sockets on one port (SO_REUSEPORT, 127.0.0.1 and 0.0.0.0): once.
                ports.setdefault((p.port, family), p)
    if not read_any:
        raise NotSupported(f"{proc_net} has no tcp table to read listening ports from")
    return PortList(ports=[ports[k] for k in sorted(ports)])


async def list_ports(started: frozenset[int] = frozenset()) -> PortList:
    """The machine's ports, but for the sockets ``started`` (its kernels' own)."""
    # Off the loop: a machine of many processes and descriptors takes a while to walk.
    return await asyncio.to_thread(listening_ports, started=started)
