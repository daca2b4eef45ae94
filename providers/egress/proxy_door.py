"""The egress proxy's door on the host, for gvisor machines.

A gvisor machine's network stack has a loopback of its own, where no socket of the host can
listen, so the proxy (providers/egress/proxy.py) serves those machines on one listener of the
host: at the address a gvisor machine reaches NATS at (the host's loopback, which its gateway
maps to, narrowed by the machine's ``fleet_gateway`` table to NATS's ports and this one; or
NATS's own host). A connection there is served as the machine whose recorded pasta holds its
other end (providers/sandbox/pasta_peer.py): nothing the machine sends says who it is, and a
connection no machine's pasta holds is refused.

Anyone may connect before anyone is known, so what connections cost before that is bounded.
At most ``MAX_UNIDENTIFIED`` wait to be identified: at that many the door stops accepting, and
the rest wait in the kernel's backlog (a flood delays another machine's connection there; it
never has the door refuse it). A connection's other end is asked of the kernel once, by its
four addresses; one that is not a socket of the platform's user (a local user's, whatever its
address) is refused then, before any pasta is read. The recorded pastas are read in a thread of
the door's own, a batch of waiting connections at a time (one read of a pasta's descriptors
serves every connection of the batch), those that held fewest descriptors first, and one that
held many (a machine holding thousands of connections) at most once a second: its machine's
connections wait for it, another machine's do not. None of it runs in the event loop's default
executor, which machines' starts, their DNS and proxy sockets and their homes' copies need.
Once a connection is known, the proxy's cap per machine applies (``MAX_CONNECTIONS``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import structlog

from base.tasks import cancel_and_join
from providers.egress import proxy_http as http
from providers.egress.proxy import EgressProxy, ProxiedMachine
from providers.sandbox import (
    Address,
    Endpoint,
    Found,
    Holders,
    Pasta,
    SockDiag,
    peer_socket,
    recorded_pasta,
)

log = structlog.get_logger(__name__)

#: Connections accepted and not identified yet: at this many the door accepts no more.
MAX_UNIDENTIFIED = 512
_BACKLOG = 1024


def recorded_pastas(data_dir: Path, owners: list[str]) -> list[Pasta]:
    """The pastas the platform spawned and recorded for each of ``owners`` (a machine id, a
    pool slot) under ``data_dir``, those still running."""
    return [p for owner in owners if (p := recorded_pasta(data_dir, owner)) is not None]


@dataclass
class _Arrival:
    r: asyncio.StreamReader
    w: asyncio.StreamWriter
    peer: Endpoint
    door: Endpoint
    #: The inode of the socket at its other end, once the kernel was asked (0: none of the
    #: platform's user's).
    inode: int | None = None


@dataclass
class HostDoor:
    proxy: EgressProxy
    #: Where it listens on the host.
    at: tuple[str, int]
    #: The recorded pastas of a machine's owners (``recorded_pastas`` of the stack's data dir).
    pastas_of: Callable[[list[str]], list[Pasta]]
    #: False: it listens nowhere and serves nobody (gvisor machines get no proxy).
    enabled: bool = True
    #: The machines served here, with the names their pasta was started under.
    _machines: dict[str, tuple[ProxiedMachine, list[str]]] = field(default_factory=dict)
    #: Connections not identified yet, oldest first, and how many (the batch being looked up
    #: included); ``_room`` is set while there is room for more.
    _waiting: list[_Arrival] = field(default_factory=list)
    _unidentified: int = 0
    _room: asyncio.Event = field(default_factory=asyncio.Event)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _holders: Holders = field(default_factory=Holders)
    _listener: socket.socket | None = None
    _lookups: ThreadPoolExecutor | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    #: Set as it closes: a connection whose arrival comes after is closed at once.
    _closed: bool = False

    async def __aenter__(self) -> HostDoor:
        if not self.enabled:
            return self
        try:
            self._listener = _listening(self.at)
        except OSError as exc:  # another process of the host has the port
            log.warning("egress.proxy_door_unavailable", address=f"{self.at[0]}:{self.at[1]}",
                      error=str(exc))  # fmt: skip
            return self
        self._room.set()
        self._lookups = ThreadPoolExecutor(1, thread_name_prefix="egress-door")
        self._tasks = [
            asyncio.create_task(self._accept_all(), name="egress-proxy-door"),
            asyncio.create_task(self._identify(), name="egress-proxy-door-lookups"),
        ]
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closed = True
        await cancel_and_join(*self._tasks)
        if self._listener is not None:
            self._listener.close()
        for a in self._waiting:
            a.w.close()
        if self._lookups is not None:
            self._lookups.shutdown(wait=False, cancel_futures=True)

    @property
    def serving(self) -> bool:
        return self._listener is not None

    @property
    def port(self) -> int:
        """The port it listens on (0: it does not)."""
        return self.at[1] if self._listener is not None else 0

    def attach(self, machine_id: str, instance_id: str, owners: list[str]) -> None:
        self._machines[machine_id] = (ProxiedMachine(machine_id, instance_id, 0), owners)

    def detach(self, machine_id: str) -> None:
        self._machines.pop(machine_id, None)

    async def _accept_all(self) -> None:
        """Accept while fewer than ``MAX_UNIDENTIFIED`` wait to be identified."""
        assert self._listener is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._room.wait()
            conn, _ = await loop.sock_accept(self._listener)
            try:  # the server's side of a stream, as asyncio's own server makes it
                await loop.connect_accepted_socket(self._protocol, conn)
            except OSError:  # reset before it was taken in
                conn.close()

    def _protocol(self) -> asyncio.StreamReaderProtocol:
        return asyncio.StreamReaderProtocol(asyncio.StreamReader(http.MAX_HEAD), self._arrive)

    def _arrive(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if self._closed:  # taken in as the door closed (its accept cancelled midway)
            w.close()
            return
        peer, door = w.get_extra_info("peername"), w.get_extra_info("sockname")
        self._waiting.append(_Arrival(r, w, (peer[0], peer[1]), (door[0], door[1])))
        self._counted(1)
        self._wake.set()

    def _counted(self, more: int) -> None:
        self._unidentified += more
        if self._unidentified >= MAX_UNIDENTIFIED:
            self._room.clear()
        else:
            self._room.set()

    async def _identify(self) -> None:
        """Identify the connections that arrived, a batch at a time, and hand each over; those
        a large pasta not read yet may hold wait for its next read."""
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._waiting = self._waiting, []
            if not batch:
                continue
            owners = {mid: names for mid, (_, names) in self._machines.items()}
            ends = [(a.peer, a.door, a.inode) for a in batch]
            try:
                inodes, found = await loop.run_in_executor(self._lookups, self._who, ends, owners)
            except OSError as exc:  # no sock_diag here: nobody is known
                log.warning("egress.proxy_door_lookup_failed", error=str(exc))
                inodes, found = [0] * len(batch), Found({}, 0.0)
            except BaseException:
                for a in batch:
                    a.w.close()
                raise
            later = []
            for a, inode in zip(batch, inodes, strict=True):
                a.inode = inode
                if inode and inode not in found.held and found.deferred_s:
                    later.append(a)
                else:
                    self._hand_over(a, found.held.get(inode))
            self._counted(len(later) - len(batch))
            if later:
                self._waiting[:0] = later
                loop.call_later(found.deferred_s, self._wake.set)

    def _hand_over(self, a: _Arrival, machine_id: str | None) -> None:
        known = self._machines.get(machine_id) if machine_id else None
        if known is None:
            log.info("egress.proxy_door_refused", peer=f"{a.peer[0]}:{a.peer[1]}")
            a.w.write(http.refusal(403, "the egress proxy serves this host's machines only"))
            a.w.close()
            return
        self.proxy.accept(known[0], a.r, a.w)

    def _who(
        self, ends: list[tuple[Endpoint, Endpoint, int | None]], owners: dict[str, list[str]]
    ) -> tuple[list[int], Found]:
        """The inode of the socket at the other end of each connection (its peer, the door's
        end, the inode if known; 0: none of the platform's user's), and the machines whose
        recorded pastas hold them (run in the door's thread)."""
        hosts = frozenset(self.proxy.platform_addresses)  # the addresses, not the networks
        with SockDiag() as diag:
            inodes = [known if known is not None else _inode(diag, peer, door, hosts)
                      for peer, door, known in ends]  # fmt: skip
        wanted = {i for i in inodes if i}
        if not wanted:
            return inodes, Found({}, 0.0)
        pastas = {mid: self.pastas_of(names) for mid, names in owners.items()}
        return inodes, self._holders.find(wanted, pastas, time.monotonic())


def _inode(diag: SockDiag, peer: Endpoint, door: Endpoint, hosts: frozenset[Address]) -> int:
    """The inode of the socket at ``peer``'s end of a connection to ``door``; 0 when there is
    none or it is another user's (a pasta runs as the platform does)."""
    from_host = ipaddress.ip_address(peer[0]) in hosts
    found = peer_socket(diag, peer, door, hosts if from_host else ())
    return found.inode if found is not None and found.uid == os.geteuid() else 0


def _listening(at: tuple[str, int]) -> socket.socket:
    """The door's listening socket (non-blocking): accepted one at a time, only while there is
    room (``HostDoor._accept_all``), which a server of asyncio's cannot be told."""
    family = socket.AF_INET6 if ":" in at[0] else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(at)
        s.listen(_BACKLOG)
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s
