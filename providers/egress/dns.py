"""The platform's DNS proxy, one per host (in its provisioner): each machine's resolver.

For each machine it serves, the proxy opens a UDP socket *inside the machine's network
namespace*, on ``RESOLVER`` (a loopback address of the machine's own), and the machine's
``/etc/resolv.conf`` names it. The socket is the proxy's (root on the host holds it), so a
query's socket says which machine asked: no address of the machine is trusted for that.

A query is answered by the machine's instance's policy:

- a name a ``deny`` domain entry matches, or (under ``default: deny``) one no ``allow`` domain
  entry matches: NXDOMAIN, without asking upstream;
- any other name is asked of the upstream (``FLEET_EGRESS_DNS_UPSTREAM``, else the host's first
  nameserver); an answer with a loopback, link-local, unspecified, multicast or platform
  address is refused (REFUSED: DNS rebinding); under ``default: deny`` the addresses it gives
  are added to the machine's ``dns`` sets for the record's TTL, with the ports of the entries
  that allowed the name, before the machine gets the answer (its next connect finds them).

Each machine has a cap on its queries at once and a second; past it a query is answered
REFUSED and counted as a refusal (providers/egress/dns_load.py), and no upstream query holds a
thread.

dnslib parses and builds the messages: no hand-written DNS parser faces a hostile machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType

import structlog
from dnslib import QTYPE, RCODE, DNSError, DNSRecord

from base.keyed_locks import KeyedLocks
from base.tasks import OwnedTasks
from contracts.gateway.network import EgressPolicy
from controlplane.policy import NameRules, decide
from providers.egress import nftables as egress
from providers.egress.dns_load import DnsCaps, Gate, ask
from providers.egress.log import open_log, read_refused
from providers.sandbox import CLONE_NEWNET, RESOLVER, in_namespaces

log = structlog.get_logger(__name__)

_MIN_TTL_S = 2
_THREADS = 4
_POLICY_FRESH_S = 1.0
#: A DNS-over-TCP connection that sends no whole query for this long is closed.
_TCP_IDLE_S = 10.0
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Called for each refusal: machine id, name ("" for a connection), why ("denied",
#: "rebinding", "rate-limited"), destination ("" for a name refused before any lookup), port.
OnRefused = Callable[[str, str, str, str, int], None]
PolicyOf = Callable[[str], Awaitable[EgressPolicy]]


def host_upstream(configured: str, resolv_conf: Path = Path("/etc/resolv.conf")) -> egress.Endpoint:
    """``host[:port]`` (``[v6]:port``) if configured, else the host's first nameserver."""
    if configured:
        if configured.startswith("[") or configured.count(":") == 1:
            host, _, port = configured.rpartition(":")
            return host.strip("[]"), int(port)
        return configured, 53
    for line in resolv_conf.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            return parts[1], 53
    return "127.0.0.1", 53


def forbidden(addr: Address, platform: Collection[Address]) -> bool:
    """Whether an answer may not point a machine at ``addr`` (DNS rebinding); ``platform``: the
    platform's addresses (providers/egress/addresses.py, its networks too)."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return (addr.is_loopback or addr.is_link_local or addr.is_unspecified
            or addr.is_multicast or addr in platform)  # fmt: skip


@dataclass
class _Machine:
    machine_id: str
    pid: int
    policy: EgressPolicy
    rules: NameRules
    #: Its cap on queries (and TCP connections) at once and a second.
    gate: Gate
    transport: asyncio.DatagramTransport | None = None
    #: The same resolver over TCP (RFC 7766: answers too large for UDP, stub resolvers that
    #: use TCP only).
    tcp: asyncio.Server | None = None
    #: Its ruleset's log of refused packets (providers/egress/log.py).
    log_sock: socket.socket | None = None
    #: Learned address -> (ports, when it expires): what the dns sets hold.
    learned: dict[Address, tuple[list[tuple[int, int]], float]] = field(default_factory=dict)
    #: Learned address -> the names that gave it (a new policy decides their ports again).
    names: dict[Address, set[str]] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: When the policy was last read (``DnsProxy.policy_of``).
    checked: float = 0.0

    def set_policy(self, policy: EgressPolicy, now: float) -> bool:
        """Take ``policy``; whether it changed. What was learned through names the new
        policy still allows stays, with the ports it now gives them, until it expires."""
        if policy == self.policy:
            return False
        self.policy, self.rules = policy, NameRules.of(policy)
        kept: dict[Address, tuple[list[tuple[int, int]], float]] = {}
        for addr, (_, until) in self.learned.items():
            decided = [decide(self.rules, n) for n in self.names.get(addr, set())]
            ports = [p for d in decided if d for p in d]
            if ports and until > now:
                kept[addr] = (ports, until)
        self.learned = kept
        self.names = {a: n for a, n in self.names.items() if a in kept}
        return True


class DnsProxy:
    """The host's proxy; ``attach`` serves a machine (again, after a policy change or a
    restart), ``detach`` stops."""

    def __init__(
        self,
        upstream: egress.Endpoint,
        platform: Collection[Address],
        on_refused: OnRefused | None = None,
        caps: DnsCaps | None = None,
        policy_of: PolicyOf | None = None,
    ) -> None:
        """``policy_of``: a machine's policy as stored, read again at most once a second
        (None: only what ``attach`` gives)."""
        self.upstream = upstream
        self.caps = caps or DnsCaps()
        #: Kept as given: the platform's networks change (providers/egress/addresses.py).
        self.platform = platform
        self.on_refused = on_refused
        self.policy_of = policy_of
        self._machines: dict[str, _Machine] = {}
        #: Queries being answered (cancelled on exit).
        self._tasks = OwnedTasks("egress-dns", failed_event="egress.dns_failed")
        #: One machine's attaches one at a time; other machines' go on meanwhile.
        self._attaching = KeyedLocks()
        #: Threads of its own for what machines' answers make it load (their learned
        #: addresses, one load at a time per machine): never the default executor's, which
        #: runs the provisioner's other work.
        self._threads = ThreadPoolExecutor(_THREADS, thread_name_prefix="egress-dns")

    async def __aenter__(self) -> DnsProxy:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for mid in list(self._machines):  # first: no query comes in after the tasks end
            self.detach(mid)
        await self._tasks.close()
        # Joined: a load under way ends within nft's timeout.
        await asyncio.to_thread(self._threads.shutdown, wait=True, cancel_futures=True)

    async def attach(self, machine_id: str, pid: int, policy: EgressPolicy) -> None:
        if await self._update(machine_id, pid, policy):
            return
        # Two attaches of one machine at once (a start and a policy change) must not both
        # make its sockets: the second would orphan the first's.
        async with self._attaching.held(machine_id):
            if not await self._update(machine_id, pid, policy):
                await self._make(machine_id, pid, policy)
        log.debug("egress.dns_attached", machine_id=machine_id)

    async def _update(self, machine_id: str, pid: int, policy: EgressPolicy) -> bool:
        """Give a machine already served (same namespace) ``policy``; False if it is not."""
        m = self._machines.get(machine_id)
        if m is None or m.pid != pid or m.transport is None:
            return False
        m.checked = time.monotonic()
        if m.set_policy(policy, m.checked):
            await self._relearn(m)
        return True

    async def _make(self, machine_id: str, pid: int, policy: EgressPolicy) -> None:
        self.detach(machine_id)
        sock = await owned_socket_in(pid, _resolver_socket)
        now = time.monotonic()
        m = _Machine(
            machine_id, pid, policy, NameRules.of(policy), Gate(self.caps, now), checked=now
        )
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self, m), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        m.transport = transport
        # Registered from here on: a failure or cancellation below leaves what was made so
        # far for detach to close.
        self._machines[machine_id] = m
        tcp = await owned_socket_in(pid, partial(_resolver_socket, socket.SOCK_STREAM))
        try:
            m.tcp = await asyncio.start_server(lambda r, w: self._serve_tcp(m, r, w), sock=tcp)
        except BaseException:
            tcp.close()
            raise
        try:
            m.log_sock = await owned_socket_in(pid, open_log)
        except egress.EgressUnavailable as exc:  # refusals are then not events, only refused
            log.warning("egress.log_unavailable", machine_id=machine_id, error=str(exc))
        else:
            loop.add_reader(m.log_sock.fileno(), self._on_log, m)
        finally:
            if self._machines.get(machine_id) is not m:  # detached while its sockets were made
                _close(m)

    def detach(self, machine_id: str) -> None:
        m = self._machines.pop(machine_id, None)
        if m is not None:
            _close(m)

    def _on_log(self, m: _Machine) -> None:
        if m.log_sock is None:
            return
        for destination, port in read_refused(m.log_sock):
            log.info("egress.refused", machine_id=m.machine_id, destination=destination,
                     port=port)  # fmt: skip
            if self.on_refused is not None:
                self.on_refused(m.machine_id, "", "denied", destination, port)

    def _spawn(self, m: _Machine, data: bytes, addr: tuple[str, int]) -> None:
        if not m.gate.enter(time.monotonic()):
            reply = self._over_cap(m, data)
            if reply is not None and m.transport is not None:
                m.transport.sendto(reply, addr)
            return
        self._tasks.spawn(self._serve(m, data, addr), machine_id=m.machine_id)

    def _over_cap(self, m: _Machine, data: bytes) -> bytes | None:
        """REFUSED for a query past the machine's cap, counted as a refusal (its events say
        how many); None for what is no query."""
        try:
            query = DNSRecord.parse(data)
        except DNSError:
            return None
        name = str(query.q.qname).rstrip(".").lower()
        log.debug("egress.dns_rate_limited", machine_id=m.machine_id, name=name)
        if self.on_refused is not None:
            self.on_refused(m.machine_id, name, "rate-limited", "", 0)
        reply = query.reply()
        reply.header.rcode = RCODE.REFUSED
        return bytes(reply.pack())

    async def _serve(self, m: _Machine, data: bytes, addr: tuple[str, int]) -> None:
        try:  # a failure is the task's (logged): the machine retries or gives up
            reply = await self.answer(m, data)
        finally:
            m.gate.leave()
        if reply is not None and m.transport is not None:
            m.transport.sendto(reply, addr)

    async def _serve_tcp(
        self, m: _Machine, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Queries on one TCP connection, each with its two-byte length, answered in turn.
        A connection past the machine's cap is closed at once."""
        if m.gate.connections >= self.caps.concurrency:
            writer.close()
            if self.on_refused is not None:
                self.on_refused(m.machine_id, "", "rate-limited", "", 0)
            return
        m.gate.connections += 1
        try:
            while True:
                async with asyncio.timeout(_TCP_IDLE_S):
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    data = await reader.readexactly(size)
                reply = await self._answer_within_cap(m, data)
                if reply is None:
                    break
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass  # the machine hung up, or went quiet
        except Exception as exc:  # noqa: BLE001 - task boundary: the machine retries or gives up
            log.warning("egress.dns_failed", machine_id=m.machine_id, error=repr(exc))
        finally:
            m.gate.connections -= 1
            writer.close()

    async def _answer_within_cap(self, m: _Machine, data: bytes) -> bytes | None:
        if not m.gate.enter(time.monotonic()):
            return self._over_cap(m, data)
        try:
            return await self.answer(m, data)
        finally:
            m.gate.leave()

    async def answer(self, m: _Machine, data: bytes) -> bytes | None:
        try:
            query = DNSRecord.parse(data)
        except DNSError:
            return None
        name = str(query.q.qname).rstrip(".").lower()
        await self._fresh(m)
        ports = decide(m.rules, name)
        if ports is None:
            return self._refuse(m, query, name, "denied", RCODE.NXDOMAIN, "")
        raw = await ask(self.upstream, data)
        reply = DNSRecord.parse(raw)
        found = _addresses(reply)
        bad = [a for a, _ in found if forbidden(a, self.platform)]
        if bad:
            return self._refuse(m, query, name, "rebinding", RCODE.REFUSED, str(bad[0]))
        if ports and found:
            await self._learn(m, found, ports, name)
        return raw

    async def _fresh(self, m: _Machine) -> None:
        """The machine's policy as stored, read at most once a second: a change applied by
        another provisioner of this host reaches this proxy too."""
        now = time.monotonic()
        if self.policy_of is None or now - m.checked < _POLICY_FRESH_S:
            return
        m.checked = now
        if m.set_policy(await self.policy_of(m.machine_id), now):
            await self._relearn(m)

    async def _relearn(self, m: _Machine) -> None:
        """The machine's new ruleset (its dns sets empty) given back what it still may reach
        of what it learned."""
        async with m.lock:
            if m.learned:
                now = time.monotonic()
                script = egress.learned_script(m.learned, now)
                await egress.apply(m.pid, script, m.machine_id, self._threads)

    def _refuse(
        self, m: _Machine, query: DNSRecord, name: str, why: str, rcode: int, destination: str
    ) -> bytes:
        log.info("egress.dns_refused", machine_id=m.machine_id, name=name, why=why)
        if self.on_refused is not None:
            self.on_refused(m.machine_id, name, why, destination, 0)
        reply = query.reply()
        reply.header.rcode = rcode
        return bytes(reply.pack())

    async def _learn(
        self,
        m: _Machine,
        found: list[tuple[Address, int]],
        ports: list[tuple[int, int]],
        name: str,
    ) -> None:
        async with m.lock:
            for addr, _ in found:
                m.names.setdefault(addr, set()).add(name)
            now = time.monotonic()
            if all(_known(m, addr, ttl, ports, now) for addr, ttl in found):
                return  # the sets hold them for long enough: no nft round trip
            for addr, ttl in found:
                old_ports, old_until = m.learned.get(addr, ([], 0.0))
                until = max(old_until, now + max(ttl, _MIN_TTL_S))
                m.learned[addr] = (old_ports + ports if old_until > now else ports, until)
            m.learned = {a: v for a, v in m.learned.items() if v[1] > now}
            m.names = {a: n for a, n in m.names.items() if a in m.learned}
            script = egress.learned_script(m.learned, now)
            await egress.apply(m.pid, script, m.machine_id, self._threads)


def _close(m: _Machine) -> None:
    if m.transport is not None:
        m.transport.close()
    if m.tcp is not None:
        m.tcp.close()
    if m.log_sock is not None:
        asyncio.get_running_loop().remove_reader(m.log_sock.fileno())
        m.log_sock.close()
        m.log_sock = None


def _known(m: _Machine, addr: Address, ttl: int, ports: list[tuple[int, int]], now: float) -> bool:
    """Whether ``addr`` is in the machine's sets with ``ports``, for at least half of ``ttl``."""
    had, until = m.learned.get(addr, ([], 0.0))
    return until >= now + max(ttl, _MIN_TTL_S) / 2 and all(p in had for p in ports)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, proxy: DnsProxy, machine: _Machine) -> None:
        self.proxy, self.machine = proxy, machine

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.proxy._spawn(self.machine, data, addr)


def _addresses(reply: DNSRecord) -> list[tuple[Address, int]]:
    out: list[tuple[Address, int]] = []
    for rr in reply.rr:
        if rr.rtype in (QTYPE.A, QTYPE.AAAA):
            out.append((ipaddress.ip_address(str(rr.rdata)), int(rr.ttl)))
    return out


def _resolver_socket(kind: socket.SocketKind = socket.SOCK_DGRAM) -> socket.socket:
    """The resolver's socket, UDP or TCP (listening), bound to ``RESOLVER``."""
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(RESOLVER)
        if kind == socket.SOCK_STREAM:
            s.listen(16)
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


async def owned_socket_in(pid: int, make: Callable[[], socket.socket]) -> socket.socket:
    """``_socket_in`` on a worker thread. The thread cannot be stopped, so a caller cancelled
    while it runs must not drop the socket it makes: that socket is closed once made."""
    made = asyncio.ensure_future(asyncio.to_thread(_socket_in, pid, make))
    try:
        return await asyncio.shield(made)
    except asyncio.CancelledError:
        # Waited for (it is short), so that a cancelled caller has nothing still being made
        # when it returns; cancelled again, the socket is closed whenever the thread ends.
        try:
            await asyncio.wait([made])
        finally:
            if made.done():
                _close_made(made)
            else:
                made.add_done_callback(_close_made)
        raise


def _close_made(made: asyncio.Future[socket.socket]) -> None:
    if not made.cancelled() and made.exception() is None:
        made.result().close()


def _socket_in(pid: int, make: Callable[[], socket.socket]) -> socket.socket:
    """``make()`` run in the network namespace of ``pid`` (providers/sandbox/namespaces.py): a
    socket of the namespace, held by the host."""
    try:
        return in_namespaces(pid, CLONE_NEWNET, make)
    except Exception as exc:  # noqa: BLE001 - whatever it was, the namespace gave no socket
        raise egress.EgressUnavailable(f"no socket in {pid}'s namespace: {exc}") from None
