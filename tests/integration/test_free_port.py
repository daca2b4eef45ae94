"""The embedded servers report the ports they bound; none is chosen for them and then held.

nats-server binds ports of the kernel's choosing and writes them in its ports file; valkey
cannot choose one (``port 0`` turns its TCP off), so it is started on a port nothing holds and,
if something took it first, again on another. A restart binds the same port again. `free_port`
stays for what must be named before anything starts (a NATS cluster's routes): two callers
(parallel test workers, or one `fleet up --ha`) are never handed the same one, and the real
servers still bind it."""

from __future__ import annotations

import contextlib
import errno
import json
import random
import socket
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from fleet import embedded
from fleet.embedded import NatsServer, PortHold, ValkeyServer, free_port
from fleet.up_servers import ServerSupervisor
from tests.waiters import wait_until


def _nats_info_port(port: int) -> int:
    """The port a nats-server says it listens on, in the INFO it greets a client with."""
    with socket.create_connection(("127.0.0.1", port), 2) as conn:
        line = conn.makefile("rb").readline()
    info: dict[str, int] = json.loads(line.removeprefix(b"INFO "))
    return info["port"]


def test_nats_reports_the_ports_it_bound(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats", monitor=True)
    assert (server.port, server.monitor_port) == (0, 0)  # nothing chosen for it, nothing held
    with server:
        assert server.port
        assert server.monitor_port
        assert _nats_info_port(server.port) == server.port
        varz = f"http://127.0.0.1:{server.monitor_port}/varz"
        with urllib.request.urlopen(varz, timeout=5) as r:
            assert json.load(r)["port"] == server.port
        bound = server.port
        server.kill()
        server.start()  # clients reconnect to the address they know
        assert server.port == bound
        assert _nats_info_port(bound) == bound


def test_valkey_started_on_a_taken_port_starts_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as squatter:  # SO_REUSEADDR: as a server binds
        taken = squatter.getsockname()[1]
        offered = iter([taken, taken])
        real = embedded.candidate_port
        monkeypatch.setattr(embedded, "candidate_port", lambda: next(offered, None) or real())
        with ValkeyServer(tmp_path / "valkey", password="pw") as valkey:
            assert valkey.port not in (0, taken)
            with redis.Redis(port=valkey.port, password="pw", socket_timeout=5) as r:
                assert r.ping()
            bound = valkey.port
            valkey.kill()
            valkey.start()
            assert valkey.port == bound
            with redis.Redis(port=bound, password="pw", socket_timeout=5) as r:
                assert r.ping()


def test_a_valkey_told_a_taken_port_says_so(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        taken = squatter.getsockname()[1]
        with (
            pytest.raises(embedded.ServerStartError, match="Address already in use"),
            ValkeyServer(tmp_path / "valkey", port=taken, password="pw"),
        ):
            pass


def test_a_held_port_goes_to_its_server_alone_as_often_as_it_restarts(tmp_path: Path) -> None:
    with PortHold() as held:
        with socket.socket() as other, pytest.raises(OSError, match="in use"):
            other.bind(("127.0.0.1", held.port))
        with socket.socket() as other, pytest.raises(OSError, match="in use"):
            other.bind(("0.0.0.0", held.port))
        for _ in range(2):  # the server binds it, and again once restarted
            with NatsServer(tmp_path / "nats", port=held.port) as nats_server:
                assert _nats_info_port(held.port) == nats_server.port == held.port
    with socket.socket() as other:  # released
        other.bind(("127.0.0.1", held.port))


async def test_a_dead_servers_ports_are_held_until_it_is_back(tmp_path: Path) -> None:
    """Its ports are the kernel's, from the range outgoing connections take theirs from."""
    supervisor = ServerSupervisor()
    server = NatsServer(tmp_path / "nats", monitor=True)
    supervisor.watch(server, "nats-server")
    with server:
        ports = server.ports()
        assert server.proc is not None
        server.proc.kill()  # as a crash would: the supervisor finds it exited
        server.proc.wait()
        assert supervisor.check(time.monotonic())  # noticed: restarting after its backoff
        for port in ports:
            with socket.socket() as other, pytest.raises(OSError, match="in use"):
                other.bind(("127.0.0.1", port))

        def restarted() -> bool:
            supervisor.check(time.monotonic())
            with contextlib.suppress(OSError):
                return _nats_info_port(ports[0]) == ports[0]
            return False

        await wait_until(restarted, timeout=20)
        assert server.ports() == ports
    supervisor.close()
    for port in ports:
        with socket.socket() as other:
            other.bind(("127.0.0.1", port))


def test_a_port_handed_out_is_refused_to_a_plain_bind() -> None:
    port = free_port()
    with socket.socket() as other, pytest.raises(OSError, match="in use") as refused:
        other.bind(("127.0.0.1", port))
    assert refused.value.errno == errno.EADDRINUSE


def test_two_callers_drawing_the_same_number_get_two_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn = random.randrange(20_000)  # every draw of both callers: this number
    monkeypatch.setattr(random, "randrange", lambda _n: drawn)
    first, second = free_port(), free_port()
    assert first != second


def test_the_servers_bind_the_port_they_were_handed(tmp_path: Path) -> None:
    with (
        NatsServer(tmp_path / "nats", port=free_port()) as nats_server,
        ValkeyServer(tmp_path / "valkey", port=free_port(), password="pw") as valkey,
        socket.create_server(("0.0.0.0", free_port())) as listener,  # asyncio's and aiohttp's bind
    ):
        for port in (nats_server.port, valkey.port, listener.getsockname()[1]):
            with socket.create_connection(("127.0.0.1", port), 2):
                pass
