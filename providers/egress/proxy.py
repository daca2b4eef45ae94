"""The platform's egress proxy, one per host (in its provisioner): where a machine's secrets are
added to its requests on the way out, so that the machine never holds them.

For each machine it serves, the proxy listens *inside the machine's network namespace*, on
``EGRESS_PROXY`` (a loopback address of the machine's own, beside its resolver); the machine's
``HTTPS_PROXY`` names it. The listening socket is the proxy's (root on the host holds it), so
the socket a connection arrives on says which machine it is: nothing the machine sends is
trusted for that.

What the proxy does with a request:

- ``CONNECT host:port``: refused (403) unless the machine's instance's egress policy allows the
  host and port; a name is resolved on the platform, and an address that is the host's own
  (loopback, link-local, the platform's) or another machine's (any subnet of the docker
  engine's networks: providers/egress/addresses.py) is refused unless the policy names it.
  Then, if a secret of the instance names the host, TLS is ended with a certificate for it from the
  instance's CA (``controlplane/security/secret_ca.py``), and each request in it is held to the
  tunnel's authority and an ordinary method (``providers/egress/request.py``: else 403, the
  connection closed), gets the header of each secret that names the host *then* (set,
  replacing whatever the machine sent) and goes on over TLS to the upstream, verified against
  the system's CAs and ``FLEET_SECRETS_UPSTREAM_CA``. Any other ``CONNECT`` is a plain tunnel.
- a plain-HTTP request (``GET http://…``): the same policy, then sent on as it came, never
  with a secret.

The secrets are looked up for each request, so a deleted one goes on no later request, on an
open connection too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

import h11
import structlog

from base.relay import relay
from base.tasks import OwnedTasks
from contracts.gateway.network import EgressEntry, EgressPolicy
from contracts.gateway.secrets import MACHINE_PROXY, entry_covers, header_value
from controlplane.policy import NameRules, decide
from controlplane.store import StoredSecret
from providers.egress import proxy_http as http
from providers.egress.dns import forbidden, owned_socket_in
from providers.egress.request import Inadmissible

log = structlog.get_logger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
#: Connections one machine may hold through the proxy at once; past it, 503.
MAX_CONNECTIONS = 256
CONNECT_TIMEOUT_S = 15.0
_TLS_TIMEOUT_S = 15.0
#: How long a closed connection's transport is waited for (a peer's TLS close is not).
_CLOSE_WAIT_S = 2.0


SocketIn = Callable[[int, Callable[[], socket.socket]], Awaitable[socket.socket]]


class Refused(Exception):
    """The policy refuses the destination: the text says why (no secret in it)."""


class PolicyRefused(Refused):
    """Refused by the instance's network policy (not for a malformed request)."""


#: The status line's words for a destination the instance's network policy refuses.
POLICY_PHRASE = "Refused by the instance's network policy"


@dataclass(frozen=True)
class Platform:
    """What the proxy asks of the platform for a machine's instance."""

    policy: Callable[[str], Awaitable[EgressPolicy]]
    #: The instance's secrets for ``host`` at ``port`` (those whose hosts name it).
    secrets: Callable[[str, str, int], Awaitable[list[StoredSecret]]]
    #: A server context for (instance, host), from the instance's CA.
    leaf: Callable[[str, str], Awaitable[ssl.SSLContext]]
    open_value: Callable[[str], str]
    #: One request sent with the secret: (instance, secret name, machine, the CONNECT's
    #: ``host:port``).
    used: Callable[[str, str, str, str], Coroutine[Any, Any, None]]


@dataclass
class ProxiedMachine:
    """A machine the proxy serves: its listener in its namespace (``pid``), or none (0) for
    one served at the host's door (providers/egress/proxy_door.py)."""

    machine_id: str
    instance_id: str
    pid: int
    server: asyncio.Server | None = None
    open: int = 0


@dataclass
class EgressProxy:
    platform: Platform
    #: Addresses the proxy never connects to unless a policy names them: the host's own and
    #: NATS's, and the machines' networks (providers/egress/addresses.py).
    platform_addresses: Collection[Address]
    upstream_tls: ssl.SSLContext
    #: Where it listens in each machine's namespace...
    listen_at: tuple[str, int] = MACHINE_PROXY
    #: ...and how a socket is made there (a test's proxy listens in its own).
    socket_in: SocketIn = owned_socket_in
    _machines: dict[str, ProxiedMachine] = field(default_factory=dict)
    _tasks: OwnedTasks = field(
        default_factory=lambda: OwnedTasks("egress-proxy", failed_event="egress.proxy_failed")
    )
    _attaching: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def __aenter__(self) -> EgressProxy:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for mid in list(self._machines):
            self.detach(mid)
        await self._tasks.close()

    async def attach(self, machine_id: str, instance_id: str, pid: int) -> None:
        """Listen in the namespace of ``pid`` for ``machine_id`` (again after a restart)."""
        async with self._attaching:
            had = self._machines.get(machine_id)
            if had is not None and had.pid == pid and had.server is not None:
                return
            self.detach(machine_id)
            m = ProxiedMachine(machine_id, instance_id, pid)
            sock = await self.socket_in(pid, partial(_listening_socket, self.listen_at))
            try:
                m.server = await asyncio.start_server(
                    lambda r, w: self.accept(m, r, w), sock=sock, limit=http.MAX_HEAD
                )
            except BaseException:
                sock.close()
                raise
            self._machines[machine_id] = m
        log.debug("egress.proxy_attached", machine_id=machine_id)

    def port_of(self, machine_id: str) -> int:
        """The port the proxy listens on for ``machine_id`` (``listen_at``'s, or the one the
        kernel gave for port 0)."""
        server = self._machines[machine_id].server
        assert server is not None
        return int(server.sockets[0].getsockname()[1])

    def detach(self, machine_id: str) -> None:
        m = self._machines.pop(machine_id, None)
        if m is not None and m.server is not None:
            m.server.close()

    def accept(self, m: ProxiedMachine, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        """Serve a connection of ``m``'s (its own number of them at most)."""
        if m.open >= MAX_CONNECTIONS:
            w.write(http.refusal(503, "too many connections through the proxy"))
            w.close()
            return
        m.open += 1
        task = self.spawn(self._serve(m, r, w), name=f"egress-proxy-{m.machine_id}")

        def ended(_: asyncio.Task[None]) -> None:
            m.open -= 1
            # A task cancelled before its first step (the proxy closed just after the
            # accept) never ran _serve's own close: the connection would be left open.
            w.close()

        task.add_done_callback(ended)

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """A task of the proxy's, joined when it closes."""
        return self._tasks.spawn(work, name=name)

    async def _serve(
        self, m: ProxiedMachine, r: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        try:
            await self._one(m, r, w)
        except (ConnectionError, http.ProxyHttpError, ssl.SSLError, TimeoutError) as exc:
            log.debug("egress.proxy_ended", machine_id=m.machine_id, error=str(exc)[:200])
        finally:
            await _closed(w)

    async def _one(
        self, m: ProxiedMachine, r: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        srv = http.server()
        request = await asyncio.wait_for(http.next_event(srv, r), http.HEAD_TIMEOUT_S)
        if not isinstance(request, h11.Request):
            return
        try:
            if request.method == b"CONNECT":
                host, port = _authority(request.target.decode("ascii", "replace"))
            else:
                host, port = _url_authority(request.target.decode("ascii", "replace"))
            address = await self._destination(m, host, port)
        except Refused as exc:
            log.info("egress.proxy_refused", machine_id=m.machine_id, host=host_of(request),
                     reason=str(exc))  # fmt: skip
            phrase = POLICY_PHRASE if isinstance(exc, PolicyRefused) else None
            w.write(http.refusal(403, f"refused by the egress proxy: {exc}", phrase))
            return
        if request.method == b"CONNECT":
            await self._connect(m, (r, w), host, port, address)
        else:
            await self._plain(m, (r, w), srv, request, address, port)

    async def _destination(self, m: ProxiedMachine, host: str, port: int) -> Address:
        """The address to connect to for ``host:port``, if the policy allows it; else Refused."""
        policy = await self.platform.policy(m.instance_id)
        return await allowed(policy, host, port, self.platform_addresses)

    async def _connect(
        self, m: ProxiedMachine, down: tuple[asyncio.StreamReader, asyncio.StreamWriter], host: str,
        port: int, address: Address,
    ) -> None:  # fmt: skip
        secrets = await self.platform.secrets(m.instance_id, host, port)
        if not secrets:
            up = await _open(address, port)
            down[1].write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await _tunnel(down, up)
            return
        ctx = await self.platform.leaf(m.instance_id, host)
        # Nothing read between the 200 and TLS: the client's hello follows the 200 at once, and
        # uvloop (the services' loop) runs a read before the task start_tls runs in, which put
        # the hello in the plain stream's buffer and left the handshake waiting for it.
        cast(asyncio.Transport, down[1].transport).pause_reading()
        down[1].write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await down[1].drain()
        await asyncio.wait_for(down[1].start_tls(ctx), _TLS_TIMEOUT_S)
        up = await _open(address, port, tls=self.upstream_tls, server_hostname=host)
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

        async def lookup() -> tuple[dict[bytes, bytes], list[str]]:
            # Per request, not per connection: a secret deleted while a client keeps its
            # connection open goes on no later request (the platform keeps what it read until
            # a change is announced: services/provisioner/egress/secrets_cache.py).
            now = await self.platform.secrets(m.instance_id, host, port)
            return _headers(now, self.platform.open_value), [s.name for s in now]

        async def sent(used: list[str]) -> None:
            # Counted beside the request, not before its answer: a store's round trip per
            # request would add to every request's latency (benchmark 31).
            for name in used:
                self.spawn(self.platform.used(m.instance_id, name, m.machine_id, authority),
                           name=f"egress-proxy-used-{m.machine_id}")  # fmt: skip

        try:
            await http.exchange(down, up, (host, port), lookup, sent)
        except Inadmissible as exc:
            log.info("egress.proxy_refused", machine_id=m.machine_id, host=authority,
                     reason=str(exc))  # fmt: skip
            down[1].write(http.refusal(403, f"refused by the egress proxy: {exc}"))
        finally:
            await _closed(up[1])

    async def _plain(
        self, m: ProxiedMachine, down: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        srv: h11.Connection, request: h11.Request, address: Address, port: int,
    ) -> None:  # fmt: skip
        """A plain-HTTP request, sent on as it came (never with a secret), and its answer."""
        up = await _open(address, port)
        try:
            cli = http.client()
            target = _origin_form(request.target)
            headers = http.with_headers(request.headers, {})
            up[1].write(cli.send(h11.Request(method=request.method, target=target,
                                             headers=headers)))  # fmt: skip
            await http.body(srv, down[0], cli, up[1])
            await http.answer(cli, up[0], srv, down[1])
        finally:
            await _closed(up[1])


def _headers(secrets: list[StoredSecret], open_value: Callable[[str], str]) -> dict[bytes, bytes]:
    """The header of each secret (by name: the first of two secrets for one header wins)."""
    out: dict[bytes, bytes] = {}
    for s in secrets:
        name = s.header.lower().encode()
        if name not in out:
            out[name] = header_value(s.format, open_value(s.sealed)).encode()
    return out


def host_of(request: h11.Request) -> str:
    return request.target.decode("ascii", "replace")[:200]


def _authority(target: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) of a CONNECT; Refused if it is no such thing."""
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise Refused(f"CONNECT needs host:port, got {target[:100]!r}")
    return host.strip("[]").lower(), int(port)


def _url_authority(target: str) -> tuple[str, int]:
    url = urlsplit(target)
    if url.scheme != "http" or not url.hostname:
        raise Refused("a proxy request names an http:// URL (https goes through CONNECT)")
    try:
        return url.hostname.lower(), url.port or 80
    except ValueError:
        raise Refused(f"no port in {target[:100]!r}") from None


def _origin_form(target: bytes) -> bytes:
    url = urlsplit(target.decode("ascii", "replace"))
    return ((url.path or "/") + (f"?{url.query}" if url.query else "")).encode()


def _covers_address(entries: Iterable[EgressEntry], addr: Address, port: int) -> bool:
    return any(entry_covers(e, str(addr), port) for e in entries)


async def allowed(
    policy: EgressPolicy, host: str, port: int, platform: Collection[Address]
) -> Address:
    """The address ``host:port`` is reached at, if ``policy`` allows it from the platform's
    side; else Refused. A name is allowed as the machine's resolver allows it, then each of
    its addresses as the policy's address rules do."""
    allow, deny = policy.parsed()
    try:
        addresses: list[Address] = [ipaddress.ip_address(host)]
        by_name = False
    except ValueError:
        ports = decide(NameRules.of(policy), host.removesuffix("."))
        if ports is None or (ports and not any(lo <= port <= hi for lo, hi in ports)):
            raise PolicyRefused(
                f"{host}:{port} is not allowed by the instance's egress policy"
            ) from None
        addresses = await _resolve(host, port)
        by_name = True
    for addr in addresses:
        named = _covers_address(allow, addr, port)
        if _covers_address(deny, addr, port):
            continue
        if forbidden(addr, platform) and not named:
            continue
        if not by_name and policy.default == "deny" and not named:
            continue
        return addr
    raise PolicyRefused(f"{host}:{port} is not allowed by the instance's egress policy "
                        "(or is an address of the platform's host)")  # fmt: skip


async def _resolve(host: str, port: int) -> list[Address]:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise Refused(f"{host} does not resolve") from None
    return [ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos]


async def _open(
    address: Address, port: int, *, tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:  # fmt: skip
    return await asyncio.wait_for(asyncio.open_connection(
        str(address), port, ssl=tls, server_hostname=server_hostname if tls else None,
        limit=http.MAX_HEAD), CONNECT_TIMEOUT_S)  # fmt: skip


async def _tunnel(
    down: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    up: tuple[asyncio.StreamReader, asyncio.StreamWriter],
) -> None:
    try:
        await relay(_pump(down[0], up[1]), _pump(up[0], down[1]), until="both")
    finally:
        await _closed(up[1])


async def _closed(w: asyncio.StreamWriter) -> None:
    """``w`` closed, its transport gone (within ``_CLOSE_WAIT_S``): a connection is over when
    its task is joined, not later (uvloop cannot close a loop with a transport still closing)."""
    w.close()
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        await asyncio.wait_for(w.wait_closed(), _CLOSE_WAIT_S)


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    while data := await src.read(http.CHUNK):
        dst.write(data)
        await dst.drain()
    if dst.can_write_eof():
        dst.write_eof()


def _listening_socket(at: tuple[str, int]) -> socket.socket:
    # IPPROTO_TCP named, so that asyncio sets TCP_NODELAY on each accepted connection (it
    # checks the socket's proto): else Nagle holds an answer's body behind its head until the
    # machine's delayed ACK, about 40 ms a request.
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(at)
        s.listen(128)
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s
