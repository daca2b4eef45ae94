"""The egress proxy's rules (providers/egress/proxy.py), on real sockets in this process's own
network namespace: a real TLS upstream with a CA of its own, a real HTTP client (aiohttp), the
platform's side in memory. The same through a real machine: tests/integration/test_secrets.py."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvloop
from aiohttp import web

from contracts.gateway.network import EgressPolicy
from contracts.gateway.secrets import covers
from controlplane.security.crypto import SecretBox, generate_secret_key
from controlplane.security.secret_ca import LeafContexts, make_ca
from controlplane.store import StoredSecret
from providers.egress import EgressProxy, Platform
from providers.egress.proxy import ProxiedMachine
from tests.tls import server_tls

VALUE = "sk-live-not-for-machines"


async def _here(pid: int, make: Callable[[], socket.socket]) -> socket.socket:
    """This process's own namespace stands for the machine's."""
    return make()


def _proxy(world: World, trust: ssl.SSLContext) -> EgressProxy:
    return EgressProxy(world.platform(), frozenset(), trust, listen_at=("127.0.0.1", 0),
                       socket_in=_here)  # fmt: skip


@dataclass
class World:
    box: SecretBox
    policy: dict[str, EgressPolicy] = field(default_factory=dict)
    secrets: dict[str, list[StoredSecret]] = field(default_factory=dict)
    used: list[tuple[str, str, str, str]] = field(default_factory=list)

    def platform(self) -> Platform:
        leaves = LeafContexts(self.box)
        cas = {i: make_ca(i, self.box) for i in ("inst-a", "inst-b")}
        self.cas = cas

        async def policy(iid: str) -> EgressPolicy:
            return self.policy.get(iid, EgressPolicy())

        async def secrets(iid: str, host: str, port: int) -> list[StoredSecret]:
            return [s for s in self.secrets.get(iid, []) if covers(s.hosts, host, port)]

        async def leaf_of(iid: str, host: str) -> ssl.SSLContext:
            return leaves.context(iid, cas[iid], host)

        async def used(iid: str, name: str, mid: str, host: str) -> None:
            self.used.append((iid, name, mid, host))

        return Platform(policy=policy, secrets=secrets, leaf=leaf_of,
                        open_value=self.box.decrypt, used=used)  # fmt: skip


#: Each request the upstream got: its method, Host, Authorization and the port it came from.
Seen = list[tuple[str, str | None, str | None, int]]
SEEN = web.AppKey("seen", list)


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    peer = request.transport.get_extra_info("peername") if request.transport else None
    got = (request.headers.get("Host"), request.headers.get("Authorization"))
    request.app[SEEN].append((request.method, *got, peer[1] if peer else 0))
    return web.json_response({"headers": dict(request.headers), "body": body.decode()})


@pytest.fixture
def seen() -> Seen:
    return []


@pytest.fixture
async def upstream(tmp_path: Path, seen: Seen) -> AsyncIterator[tuple[int, int, Path]]:
    """A TLS server on 127.0.0.1 with a CA of its own (its file), and a plain one: ports. Each
    request either one gets is written to ``seen``."""
    ctx = server_tls("127.0.0.1", tmp_path / "upstream-ca.pem")
    app = web.Application()
    app[SEEN] = seen
    app.router.add_route("*", "/{tail:.*}", _echo)
    runner = web.AppRunner(app)
    await runner.setup()
    tls, plain = (
        web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx),
        web.TCPSite(runner, "127.0.0.1", 0),
    )
    await tls.start()
    await plain.start()
    ports = [s._server.sockets[0].getsockname()[1] for s in (tls, plain)]  # type: ignore[union-attr]
    yield ports[0], ports[1], tmp_path / "upstream-ca.pem"
    await runner.cleanup()


@pytest.fixture
async def proxied(upstream: tuple[int, int, Path]) -> AsyncIterator[tuple[EgressProxy, World]]:
    world = World(SecretBox(generate_secret_key()))
    trust = ssl.create_default_context(cafile=str(upstream[2]))
    async with _proxy(world, trust) as proxy:
        await proxy.attach("m-a", "inst-a", os.getpid())
        await proxy.attach("m-b", "inst-b", os.getpid())
        yield proxy, world


def _secret(world: World, iid: str, hosts: list[str], name: str = "API_KEY") -> None:
    world.secrets.setdefault(iid, []).append(StoredSecret(
        name=name, hosts=hosts, header="Authorization", format="Bearer {value}",
        sealed=world.box.encrypt(VALUE)))  # fmt: skip


class _Client:
    """Requests through the proxy's socket for ``machine``, trusting ``verify``."""

    def __init__(self, proxy: EgressProxy, machine: str, verify: ssl.SSLContext) -> None:
        self.url = f"http://127.0.0.1:{proxy.port_of(machine)}"
        self.verify = verify

    async def __aenter__(self) -> _Client:
        self.s = aiohttp.ClientSession(trust_env=False, timeout=aiohttp.ClientTimeout(total=10))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.s.close()

    async def call(self, method: str, url: str, **kw: Any) -> dict[str, Any]:
        async with self.s.request(method, url, proxy=self.url, ssl=self.verify, **kw) as r:
            return dict(await r.json())

    async def get(self, url: str, **kw: Any) -> dict[str, Any]:
        return await self.call("GET", url, **kw)


def _client(proxy: EgressProxy, machine: str, verify: ssl.SSLContext) -> _Client:
    return _Client(proxy, machine, verify)


def _trusting(pem: str) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=pem)


async def test_a_named_host_gets_the_secret_through_the_instances_ca(
    proxied: tuple[EgressProxy, World], upstream: tuple[int, int, Path]
) -> None:
    proxy, world = proxied
    world.policy["inst-a"] = EgressPolicy(allow=["127.0.0.1"])
    _secret(world, "inst-a", [f"127.0.0.1:{upstream[0]}"])
    async with _client(proxy, "m-a", _trusting(world.cas["inst-a"].cert_pem)) as c:
        got = await c.call("POST", f"https://127.0.0.1:{upstream[0]}/v1/chat",
                           headers={"Authorization": "Bearer fleet-secret-API_KEY"},
                           data=b"x" * 200_000)  # fmt: skip
        again = await c.get(f"https://127.0.0.1:{upstream[0]}/v1/models")
    assert got["headers"]["Authorization"] == f"Bearer {VALUE}"
    assert got["body"] == "x" * 200_000
    assert again["headers"]["Authorization"] == f"Bearer {VALUE}"
    assert world.used == [("inst-a", "API_KEY", "m-a", f"127.0.0.1:{upstream[0]}")] * 2


async def test_a_host_no_secret_names_is_a_plain_tunnel_with_its_own_certificate(
    proxied: tuple[EgressProxy, World], upstream: tuple[int, int, Path]
) -> None:
    proxy, world = proxied
    world.policy["inst-a"] = EgressPolicy(allow=["127.0.0.1"])
    _secret(world, "inst-a", ["api.example.com"])
    upstream_ca = ssl.create_default_context(cafile=str(upstream[2]))
    async with _client(proxy, "m-a", upstream_ca) as c:
        got = await c.get(f"https://127.0.0.1:{upstream[0]}/")
    assert "Authorization" not in got["headers"]
    assert world.used == []


async def test_another_instances_machine_gets_nothing_of_its_secrets(
    proxied: tuple[EgressProxy, World], upstream: tuple[int, int, Path]
) -> None:
    proxy, world = proxied
    world.policy["inst-b"] = EgressPolicy(allow=["127.0.0.1"])
    _secret(world, "inst-a", [f"127.0.0.1:{upstream[0]}"])
    async with _client(proxy, "m-b", ssl.create_default_context(cafile=str(upstream[2]))) as c:
        got = await c.get(f"https://127.0.0.1:{upstream[0]}/")
    assert "Authorization" not in got["headers"]


async def test_a_deleted_secret_stops_at_once(
    proxied: tuple[EgressProxy, World], upstream: tuple[int, int, Path]
) -> None:
    proxy, world = proxied
    world.policy["inst-a"] = EgressPolicy(allow=["127.0.0.1"])
    _secret(world, "inst-a", ["127.0.0.1"])
    async with _client(proxy, "m-a", _trusting(world.cas["inst-a"].cert_pem)) as c:
        first = await c.get(f"https://127.0.0.1:{upstream[0]}/")
    world.secrets["inst-a"].clear()
    async with _client(proxy, "m-a", ssl.create_default_context(cafile=str(upstream[2]))) as c:
        after = await c.get(f"https://127.0.0.1:{upstream[0]}/")
    assert first["headers"]["Authorization"] == f"Bearer {VALUE}"
    assert "Authorization" not in after["headers"]


@pytest.mark.parametrize("policy", [
    EgressPolicy(),  # the host's loopback, not named
    EgressPolicy(default="deny", allow=["pypi.org"]),
    EgressPolicy(allow=["127.0.0.1"], deny=["127.0.0.0/8"]),
])  # fmt: skip
async def test_what_the_policy_refuses_is_refused_before_any_secret(
    proxied: tuple[EgressProxy, World], upstream: tuple[int, int, Path], policy: EgressPolicy
) -> None:
    proxy, world = proxied
    world.policy["inst-a"] = policy
    _secret(world, "inst-a", ["127.0.0.1"])
    async with _client(proxy, "m-a", _trusting(world.cas["inst-a"].cert_pem)) as c:
        with pytest.raises(aiohttp.ClientHttpProxyError, match="403") as refused:
            await c.get(f"https://127.0.0.1:{upstream[0]}/")
    assert world.used == []
    # What a client that shows the status line says (Python's: "Tunnel connection failed: 403
    # Refused by the instance's network policy"); git shows only the status.
    assert refused.value.message == "Refused by the instance's network policy"


async def test_plain_http_is_sent_on_and_never_gets_a_secret(
    proxied: tuple[EgressProxy, World], upstream: tuple[int, int, Path]
) -> None:
    proxy, world = proxied
    world.policy["inst-a"] = EgressPolicy(allow=["127.0.0.1"])
    _secret(world, "inst-a", ["127.0.0.1"])
    async with _client(proxy, "m-a", ssl.create_default_context()) as c:
        got = await c.get(f"http://127.0.0.1:{upstream[1]}/plain?q=1",
                          headers={"Authorization": "Bearer fleet-secret-API_KEY"})  # fmt: skip
    assert got["headers"]["Authorization"] == "Bearer fleet-secret-API_KEY"
    assert world.used == []


async def test_an_untrusted_upstream_is_never_sent_the_secret(
    upstream: tuple[int, int, Path],
) -> None:
    """The upstream's certificate is checked before any request goes: one signed by a CA
    the proxy does not trust gets a closed connection, not the secret."""
    world = World(SecretBox(generate_secret_key()))
    world.policy["inst-a"] = EgressPolicy(allow=["127.0.0.1"])
    _secret(world, "inst-a", ["127.0.0.1"])
    async with _proxy(world, ssl.create_default_context()) as proxy:
        await proxy.attach("m-a", "inst-a", os.getpid())
        async with _client(proxy, "m-a", _trusting(world.cas["inst-a"].cert_pem)) as c:
            with pytest.raises(aiohttp.ClientError):
                await c.get(f"https://127.0.0.1:{upstream[0]}/")
    assert world.used == []
    assert json.dumps(world.used) == "[]"


class _Tunnel:
    """Python's http.client through the proxy's ``CONNECT`` (``set_tunnel``), one connection
    kept open across requests, as an SDK's keep-alive pool keeps it. It blocks: each request
    runs in a thread while the proxy and the upstream go on in this loop."""

    def __init__(self, proxy: EgressProxy, machine: str, to: tuple[str, int],
                 verify: ssl.SSLContext) -> None:  # fmt: skip
        self.conn = http.client.HTTPSConnection("127.0.0.1", proxy.port_of(machine),
                                                context=verify, timeout=10)  # fmt: skip
        self.conn.set_tunnel(*to)

    def __enter__(self) -> _Tunnel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    async def send(self, method: str, target: str, **headers: str) -> tuple[int, bytes]:
        def send() -> tuple[int, bytes]:
            self.conn.request(method, target, headers=headers)
            answer = self.conn.getresponse()
            return answer.status, answer.read()

        return await asyncio.to_thread(send)


#: Requests that name another authority than the tunnel's, or a method that is no ordinary
#: one: each gets 403 from the proxy and never reaches the upstream (``{port}``: the tunnel's).
HOSTILE = [
    pytest.param("GET", "/", {"Host": "attacker.example"}, id="another-host"),
    pytest.param("GET", "/", {"Host": "127.0.0.1"}, id="host-without-the-tunnels-port"),
    pytest.param("GET", "/", {"Host": "127.0.0.1:1"}, id="another-port"),
    pytest.param("TRACE", "/", {}, id="trace"),
    pytest.param("CONNECT", "attacker.example:443", {}, id="connect-inside-the-tunnel"),
    pytest.param("GET", "https://attacker.example/", {}, id="absolute-form-to-another-host"),
    pytest.param("GET", "http://127.0.0.1:{port}/", {}, id="absolute-form-plain-http"),
]


@pytest.mark.parametrize(("method", "target", "headers"), HOSTILE)
async def test_a_secret_goes_only_with_its_tunnels_authority_and_an_ordinary_method(
    proxied: tuple[EgressProxy, World], upstream: tuple[int, int, Path], seen: Seen,
    method: str, target: str, headers: dict[str, str],
) -> None:  # fmt: skip
    """A shared ingress routes by Host, a server with TRACE on echoes the request's headers:
    either would hand the secret to whoever reads that site or that echo."""
    proxy, world = proxied
    world.policy["inst-a"] = EgressPolicy(allow=["127.0.0.1"])
    _secret(world, "inst-a", [f"127.0.0.1:{upstream[0]}"])
    trust = _trusting(world.cas["inst-a"].cert_pem)
    with _Tunnel(proxy, "m-a", ("127.0.0.1", upstream[0]), trust) as tunnel:
        status, said = await tunnel.send(method, target.format(port=upstream[0]), **headers)
    assert status == 403, said
    assert seen == []
    assert world.used == []
    with _Tunnel(proxy, "m-a", ("127.0.0.1", upstream[0]), trust) as tunnel:
        status, said = await tunnel.send("GET", "/", Host=f"127.0.0.1:{upstream[0]}")
    assert status == 200, said
    assert seen[0][1:3] == (f"127.0.0.1:{upstream[0]}", f"Bearer {VALUE}")


async def test_a_deleted_secret_stops_on_a_connection_kept_open(
    proxied: tuple[EgressProxy, World], upstream: tuple[int, int, Path], seen: Seen
) -> None:
    proxy, world = proxied
    world.policy["inst-a"] = EgressPolicy(allow=["127.0.0.1"])
    _secret(world, "inst-a", [f"127.0.0.1:{upstream[0]}"])
    trust = _trusting(world.cas["inst-a"].cert_pem)
    with _Tunnel(proxy, "m-a", ("127.0.0.1", upstream[0]), trust) as tunnel:
        first, _ = await tunnel.send("GET", "/", Authorization="Bearer fleet-secret-API_KEY")
        sock = tunnel.conn.sock
        world.secrets["inst-a"].clear()
        after, _ = await tunnel.send("GET", "/", Authorization="Bearer fleet-secret-API_KEY")
        assert tunnel.conn.sock is sock  # the same connection, kept open
    assert (first, after) == (200, 200)
    assert [s[2] for s in seen] == [f"Bearer {VALUE}", "Bearer fleet-secret-API_KEY"]
    assert seen[0][3] == seen[1][3]  # one connection upstream too


async def test_an_intercepted_handshake_completes_on_uvloop(
    upstream: tuple[int, int, Path], seen: Seen
) -> None:
    """The services run on uvloop (``FLEET_EVENT_LOOP``), which runs a socket's read before a
    task made in the same turn: a client's TLS hello, sent as soon as it reads the ``200``,
    went to the plain stream's buffer, and the proxy's handshake waited for it until its timeout
    (on about half of the connections)."""
    world = World(SecretBox(generate_secret_key()))
    world.policy["inst-a"] = EgressPolicy(allow=["127.0.0.1"])
    _secret(world, "inst-a", [f"127.0.0.1:{upstream[0]}"])

    async def connections() -> list[int]:
        async with _proxy(world, ssl.create_default_context(cafile=str(upstream[2]))) as proxy:
            await proxy.attach("m-a", "inst-a", os.getpid())
            trust = _trusting(world.cas["inst-a"].cert_pem)
            statuses = []
            for _ in range(10):  # each a new connection, a new handshake
                with _Tunnel(proxy, "m-a", ("127.0.0.1", upstream[0]), trust) as tunnel:
                    statuses.append((await tunnel.send("GET", "/"))[0])
            return statuses

    assert await asyncio.to_thread(uvloop.run, connections()) == [200] * 10
    assert [s[2] for s in seen] == [f"Bearer {VALUE}"] * 10


async def test_a_connection_taken_as_the_proxy_closes_is_closed_with_it() -> None:
    """Handed over just before the proxy closes (its serving task cancelled before its first
    step, which would have closed it): the connection is closed all the same, never left to
    the garbage collector (the suite saw it as an unclosed socket of a gvisor machine's)."""
    ours, theirs = socket.socketpair()
    r, w = await asyncio.open_connection(sock=ours)
    try:
        async with _proxy(
            World(SecretBox(generate_secret_key())), ssl.create_default_context()
        ) as proxy:
            proxy.accept(ProxiedMachine("m-0123456789abcdef", "inst-a", 0), r, w)
        assert w.is_closing()
    finally:
        w.close()
        theirs.close()
