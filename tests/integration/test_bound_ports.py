"""Servers report the ports they bound; none is guessed for them.

nats-server binds ports of the kernel's choosing and writes them in its ports file; valkey
cannot choose one (``port 0`` turns its TCP off), so it is started on a port nothing holds and,
if something took it first, again on another; the gateway told port 0 binds what the kernel
gives and logs it. A restart binds the same port again. What must be named before its server
runs (a NATS cluster's routes, a port a restarted server binds again) is a `PortHold`: a port
the kernel gave, bound without listening, that the server binds all the same. The tests'
valkeys listen on a unix socket only, a path of their own."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import redis

from base import procinfo
from controlplane.redis_client import redis_client
from controlplane.settings import Settings
from fleet.up import embedded
from fleet.up.embedded import NatsServer, PortHold, ValkeyServer
from fleet.up.servers import ServerSupervisor
from tests.conftest import ADMIN_TOKEN
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET
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


async def test_a_unix_socket_valkey_listens_there_alone_even_from_a_long_directory(
    tmp_path: Path,
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)  # past the 108 bytes a socket's path may have
    with ValkeyServer(deep, password="p@ss", unix=True) as valkey:
        assert valkey.socket_path is not None
        assert len(str(valkey.socket_path)) <= 100
        assert valkey.ports() == []
        assert valkey.proc is not None
        listening = _tcp_listening(valkey.proc.pid)
        assert listening == [], listening  # no TCP at all
        for _ in range(2):  # a restart listens on the same path
            r = redis_client(valkey.url)
            try:
                assert await r.ping()
            finally:
                await r.aclose()
            valkey.kill()
            valkey.start()


def _tcp_listening(pid: int) -> list[str]:
    """The TCP sockets ``pid`` listens on (state 0A in /proc/net/tcp{,6}), by inode."""
    inodes = {
        link.removeprefix("socket:[").rstrip("]")
        for link in procinfo.fd_links(pid).values()
        if link.startswith("socket:")
    }
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                found.append(fields[1])
    return found


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


async def test_the_gateway_told_port_0_logs_the_ports_it_bound(
    settings: Settings, oidc_issuer: str
) -> None:
    """Run alone (as a deployment runs it), FLEET_PORT=0 and FLEET_PREVIEW_PORT=0: each
    listener's ``gateway.listening`` names the port the kernel gave, it answers there, and the
    addresses it hands out name that port (a sign-in's callback: port 0 was never reached)."""
    env = os.environ | settings.to_env() | {
        "FLEET_PORT": "0", "FLEET_PREVIEW_PORT": "0", "FLEET_ADMIN_TOKEN": ADMIN_TOKEN,
        "FLEET_LOG_LEVEL": "info", "FLEET_OIDC_ISSUER": oidc_issuer,
        "FLEET_OIDC_CLIENT_ID": CLIENT_ID, "FLEET_OIDC_CLIENT_SECRET": CLIENT_SECRET,
    }  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.gateway", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        urls = await asyncio.wait_for(_listening(proc), 60)
        assert set(urls) == {"gateway", "previews"}, urls
        ports = {name: int(url.rsplit(":", 1)[1]) for name, url in urls.items()}
        assert 0 not in ports.values(), urls
        assert ports["gateway"] != ports["previews"], urls
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{urls['gateway']}/healthz") as r:
                assert r.status == 200
            async with http.get(f"{urls['gateway']}/auth/login", allow_redirects=False) as r:
                assert r.status in (302, 303), await r.text()
                where = parse_qs(urlsplit(r.headers["Location"]).query)
        assert where["redirect_uri"] == [f"{urls['gateway']}/auth/callback"]
        _, writer = await asyncio.open_connection("127.0.0.1", ports["previews"])
        writer.close()
        await writer.wait_closed()
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)


async def _listening(proc: asyncio.subprocess.Process) -> dict[str, str]:
    """The URL of each listener (``listener=``) from the gateway's ``gateway.listening`` lines."""
    assert proc.stderr is not None
    urls: dict[str, str] = {}
    seen = ""
    while len(urls) < 2:
        line = (await proc.stderr.readline()).decode(errors="replace")
        assert line, f"the gateway ended ({proc.returncode}) before listening:\n{seen}"
        seen += line
        if "gateway.listening" in line:
            found = dict(re.findall(r"(listener|url)=(\S+)", line))
            urls[found["listener"]] = found["url"]
    return urls
