"""Ports through the whole stack, with real daemons: an HTTP server and a WebSocket echo
server in the machine, reached through a preview URL and through ``fleet machines forward``;
a raw TCP protocol through ``fleet machines tunnel``; who may open a preview."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest

from contracts.ports import PREVIEW_COOKIE, PREVIEW_TICKET_PARAM
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.code_checks import main_text
from tests.conftest import ADMIN_TOKEN
from tests.integration.test_pipeline import home_of
from tests.integration.test_refresh import ready_machine
from tests.waiters import wait_until

SERVERS = Path(__file__).parents[1] / "machine_servers.py"


@dataclass
class Machine:
    id: str
    instance_id: str
    http: int
    ws: int
    upper: int


async def serve_in_machine(stack: FleetClient, name: str) -> Machine:
    """A ready machine running the three test servers, each listening."""
    mid = await ready_machine(stack, name)
    await stack.write_file(mid, "servers.py", SERVERS.read_text())
    modes = ("http", "ws", "upper")
    for mode in modes:
        await stack.start_process(mid, ["python3", "servers.py", mode], tag=mode)
    ports = {mode: await reported_port(stack, mid, mode) for mode in modes}
    machine = await stack.get_machine(mid)
    return Machine(mid, machine.instance_id, **ports)


async def reported_port(stack: FleetClient, mid: str, tag: str) -> int:
    """The port the machine's process ``tag`` (tests/machine_servers.py) says it listens on."""
    said: list[int] = []

    async def listening() -> bool:
        logs = await stack.process_logs(mid, tag=tag)
        said[:] = [int(line.split()[1]) for line in logs.lines if line.startswith("listening ")]
        return bool(said)

    await wait_until(listening, timeout=20)
    return said[0]


async def closed_port(stack: FleetClient, mid: str) -> int:
    """A port nothing in the machine listens on (by its own list of listening ports)."""
    listening = {p.port for p in (await stack.machine_ports(mid)).ports}
    return next(port for port in range(1024, 65536) if port not in listening)


def previews(settings: Settings) -> str:
    """The gateway's preview listener, by its address (previews by path)."""
    return f"http://127.0.0.1:{settings.preview_port}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def ws_echo(session: aiohttp.ClientSession, url: str, **kw: object) -> None:
    async with session.ws_connect(url, **kw) as ws:  # type: ignore[arg-type]
        await ws.send_str("hello")
        assert (await ws.receive(timeout=10)).data == "hello"
        big = os.urandom(300_000)  # several chunks of the stream
        await ws.send_bytes(big)
        assert (await ws.receive(timeout=10)).data == big


async def test_preview_url_http_websocket_and_who_may_open_it(
    stack: FleetClient, settings: Settings
) -> None:
    m = await serve_in_machine(stack, "preview")
    base = previews(settings)
    page = f"{base}/machines/{m.id}/ports/{m.http}/"
    other = await stack.create_instance("other")
    theirs = await stack.create_token("theirs", other.id)
    async with aiohttp.ClientSession() as session:
        async with session.get(page + "index.html", headers=bearer(ADMIN_TOKEN)) as r:
            assert r.status == 200
            assert "hello from the machine" in await r.text()
            # The program's page, not the console's policy: only who may frame it is ours.
            assert r.headers.getall("Content-Security-Policy") == ["frame-ancestors 'self'"]
        async with session.get(page + "headers", headers=bearer(ADMIN_TOKEN)) as r:
            seen = {k.lower(): v for k, v in (await r.json()).items()}
        assert "authorization" not in seen  # the token never reaches the machine
        assert seen["host"] == f"localhost:{m.http}"
        assert seen["x-forwarded-prefix"] == f"/machines/{m.id}/ports/{m.http}"
        async with session.post(page + "echo", data=b"posted", headers=bearer(ADMIN_TOKEN)) as r:
            assert await r.read() == b"posted"
        async with session.get(page + "big?n=5000000", headers=bearer(ADMIN_TOKEN)) as r:
            assert len(await r.read()) == 5_000_000
        async with session.get(page + "go", headers=bearer(ADMIN_TOKEN),
                               allow_redirects=False) as r:  # fmt: skip
            assert r.headers["Location"] == f"/machines/{m.id}/ports/{m.http}/headers"
        await ws_echo(session, f"{base}/machines/{m.id}/ports/{m.ws}/",
                      headers=bearer(ADMIN_TOKEN))  # fmt: skip

        async with session.get(page) as r:
            assert r.status == 401
        async with session.get(page, headers=bearer(theirs.token)) as r:
            assert r.status == 403
        async with session.get(page, headers=bearer("fleet_" + "x" * 40)) as r:
            assert r.status == 401
        closed = await closed_port(stack, m.id)
        async with session.get(f"{base}/machines/{m.id}/ports/{closed}/",
                               headers=bearer(ADMIN_TOKEN)) as r:  # fmt: skip
            assert r.status == 502
            assert (await r.json())["error"]["code"] == 1055
        # The console's listener serves no machine's page, whoever asks.
        console = f"http://127.0.0.1:{settings.port}/machines/{m.id}/ports/{m.http}/"
        async with session.get(console, headers=bearer(ADMIN_TOKEN)) as r:
            assert r.status == 404
            assert "hello from the machine" not in await r.text()


async def test_by_path_no_browser_gets_a_preview_where_each_has_an_origin(
    stack: FleetClient, settings: Settings
) -> None:
    """The listener's own address is one origin for every preview (and its host may be the
    console's): where previews have origins of their own, a ticket or a cookie opens none
    there, so no machine's page runs on it in a browser."""
    m = await serve_in_machine(stack, "by-path")
    page = f"{previews(settings)}/machines/{m.id}/ports/{m.http}/"
    ticket = await stack.preview_ticket(m.id, m.http)
    assert ticket.url == f"http://{m.id}-{m.http}.localhost:{settings.preview_port}/"
    async with aiohttp.ClientSession() as browser:
        async with browser.get(f"{page}?{PREVIEW_TICKET_PARAM}={ticket.ticket}",
                               allow_redirects=False) as r:  # fmt: skip
            assert r.status == 401
            assert "bearer token only" in (await r.json())["error"]["message"]
            assert PREVIEW_COOKIE not in r.cookies
        host = {"Host": urlsplit(ticket.url).netloc}
        async with browser.get(f"{previews(settings)}/?{PREVIEW_TICKET_PARAM}={ticket.ticket}",
                               headers=host, allow_redirects=False) as r:  # fmt: skip
            assert r.status == 200  # the ticket was not spent by the refusal
            cookie = r.cookies[PREVIEW_COOKIE].value
        async with browser.get(page, headers={"Cookie": f"{PREVIEW_COOKIE}={cookie}"}) as r:
            assert r.status == 401


async def test_a_browser_opening_a_port_nothing_listens_on_gets_a_page_saying_so(
    stack: FleetClient, settings: Settings
) -> None:
    """A browser's page load, as the console's Open makes it (a ticket, its cookie), of a real
    machine's port nothing listens on: an HTML page with PortUnreachable's status, not the
    JSON-RPC body an API client gets."""
    mid = await ready_machine(stack, "nothing-listens")
    port = await closed_port(stack, mid)
    ticket = await stack.preview_ticket(mid, port)
    host = {"Host": urlsplit(ticket.url).netloc}
    async with aiohttp.ClientSession() as browser:
        async with browser.get(f"{previews(settings)}/?{PREVIEW_TICKET_PARAM}={ticket.ticket}",
                               headers=host, allow_redirects=False) as r:  # fmt: skip
            assert r.status == 200
            cookie = r.cookies[PREVIEW_COOKIE].value
        page_load = {**host, "Cookie": f"{PREVIEW_COOKIE}={cookie}",
                     "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}  # fmt: skip
        async with browser.get(f"{previews(settings)}/", headers=page_load) as r:
            page = await r.text()
            assert (r.status, r.content_type) == (502, "text/html")
        async with browser.get(
            f"{previews(settings)}/", headers={**page_load, "Accept": "*/*"}
        ) as r:
            assert (await r.json())["error"]["code"] == 1055
    assert "Nothing is listening on this port" in page
    assert f"nothing accepts connections on port {port} in the machine" in page


@asynccontextmanager
async def fleet_cli(settings: Settings, *argv: str) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {**os.environ, "FLEET_URL": f"http://127.0.0.1:{settings.port}",
           "FLEET_TOKEN": ADMIN_TOKEN}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from fleet.cli.entry import main; main()", *argv, env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_forward_carries_http_and_websocket(stack: FleetClient, settings: Settings) -> None:
    m = await serve_in_machine(stack, "forward")
    async with (
        fleet_cli(settings, "machines", "forward", m.id, f"0:{m.http}") as http_fwd,
        fleet_cli(settings, "machines", "forward", m.id, f"0:{m.ws}") as ws_fwd,
    ):
        ports = []
        for proc in (http_fwd, ws_fwd):
            assert proc.stderr is not None
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line.startswith("forwarding 127.0.0.1:"), line
            ports.append(int(line.split()[1].split(":")[1]))
        async with aiohttp.ClientSession() as session:
            for _ in range(3):  # a connection each
                async with session.get(f"http://127.0.0.1:{ports[0]}/index.html") as r:
                    assert "hello from the machine" in await r.text()
            async with session.get(f"http://127.0.0.1:{ports[0]}/big?n=3000000") as r:
                assert len(await r.read()) == 3_000_000
            await ws_echo(session, f"http://127.0.0.1:{ports[1]}/")


async def test_tunnel_joins_stdio_to_a_raw_tcp_protocol(
    stack: FleetClient, settings: Settings
) -> None:
    """The program answers ``bye`` only after our EOF: the half-close reaches it, and its
    own EOF ends our stdout, so the CLI exits 0."""
    m = await serve_in_machine(stack, "tunnel")
    async with fleet_cli(settings, "machines", "tunnel", m.id, str(m.upper)) as proc:
        out, err = await asyncio.wait_for(proc.communicate(b"hello\nworld\n"), 30)
    assert out == b"HELLO\nWORLD\nbye\n", err
    assert proc.returncode == 0


async def test_tunnel_to_a_closed_port_fails_clearly(
    stack: FleetClient, settings: Settings
) -> None:
    mid = await ready_machine(stack, "closed")
    closed = await closed_port(stack, mid)
    async with fleet_cli(settings, "machines", "tunnel", mid, str(closed)) as proc:
        _, err = await asyncio.wait_for(proc.communicate(b""), 30)
    assert proc.returncode == 4, err
    assert err.startswith(b"fleet: error 1055: nothing accepts connections on port "), err


async def test_ports_routes_reach_nothing_but_a_port_of_the_callers_own_machine(
    stack: FleetClient, settings: Settings
) -> None:
    """What an attacker tries first: odd ports and ids, another instance's machine through the
    tunnel WebSocket, an absolute URL as the request target (an open proxy's way in)."""
    m = await serve_in_machine(stack, "attacked")
    base = f"http://127.0.0.1:{settings.port}"
    pages = previews(settings)
    other = await stack.create_instance("other")
    theirs = await stack.create_token("theirs", other.id)
    admin = bearer(ADMIN_TOKEN)
    async with aiohttp.ClientSession() as session:
        at = f"/machines/{m.id}"
        bad = [f"{at}/ports/0/", f"{at}/ports/65536/", f"{at}/ports/0{m.http}/", f"{at}/ports/-1/",
               f"/machines/m-nothex/ports/{m.http}/", f"{at}/tunnel/0"]  # fmt: skip
        for path in bad:
            async with session.get((base if "tunnel" in path else pages) + path,
                                   headers=admin) as r:  # fmt: skip
                assert r.status == 400, path
                assert (await r.json())["error"]["code"] == -32602
        async with session.get(f"{pages}/machines/{m.id}/ports/{m.http}", headers=admin,
                               allow_redirects=False) as r:  # fmt: skip
            assert r.status == 308
            assert r.headers["Location"] == f"/machines/{m.id}/ports/{m.http}/"
        tunnel = f"{base}/machines/{m.id}/tunnel/{m.upper}"
        async with session.get(tunnel, headers=admin) as r:  # a plain GET: no tunnel opened
            assert r.status == 400
        for headers, status in (({}, 401), (bearer(theirs.token), 403)):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(tunnel, headers=headers)
            assert refused.value.status == status
    # An absolute-form target names another host: never fetched, whatever the path says.
    for port in (settings.port, settings.preview_port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET http://example.com/machines/{m.id}/ports/{m.http}/ HTTP/1.1\r\n"
                     f"Host: example.com\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
                     "Connection: close\r\n\r\n".encode())  # fmt: skip
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert b"hello from the machine" not in answer
        assert answer.split(b" ", 2)[1] in (b"400", b"404"), answer[:200]


async def test_ssh_keys_land_in_running_and_new_machines(
    stack: FleetClient, settings: Settings, tmp_path: Path
) -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZsZWV0ZC10ZXN0LWtleS1ub3QtYS1yZWFsLW9uZQ me@laptop"
    mid = await ready_machine(stack, "ssh-keys")
    iid = (await stack.get_machine(mid)).instance_id
    answer = await stack.set_ssh_keys(iid, [key])
    assert (answer.machines, answer.failed) == (1, [])
    path = home_of(settings, mid) / ".ssh" / "authorized_keys"
    assert path.read_text() == key + "\n"
    assert path.stat().st_mode & 0o777 == 0o600
    rebuilt = await stack.rebuild_machine(iid)
    await stack.wait_for(rebuilt.id, ["ready"], timeout_s=60)
    assert (home_of(settings, rebuilt.id) / ".ssh" / "authorized_keys").read_text() == key + "\n"
    # The CLI reads public key files, one key per line.
    (tmp_path / "keys.pub").write_text(f"{key}\n\n{key.replace('me@laptop', 'ci')}\n")
    async with fleet_cli(settings, "instances", "ssh-keys", iid, str(tmp_path / "keys.pub")) as cli:
        out, err = await asyncio.wait_for(cli.communicate(), 30)
    assert cli.returncode == 0, err
    assert b"2 key(s) set; written to 1 of 1" in out
    written = (home_of(settings, rebuilt.id) / ".ssh" / "authorized_keys").read_text()
    assert written.splitlines() == [key, key.replace("me@laptop", "ci")]


async def test_a_fresh_machine_lists_none_of_the_platforms_ports(stack: FleetClient) -> None:
    """The machine's resolver (the DNS proxy's socket in its namespace), its way to NATS and
    its daemon's control server listen in every machine: none of them is the user's, so a
    fresh machine lists no port, and a server the user starts is listed."""
    await only_the_users_ports(stack, await ready_machine(stack, "fresh"))


async def only_the_users_ports(stack: FleetClient, mid: str, fresh: tuple[int, ...] = ()) -> None:
    """A fresh machine lists ``fresh`` only; a server the user starts is listed beside."""

    async def listed() -> list[int]:
        return [p.port for p in (await stack.machine_ports(mid)).ports]

    async def only_fresh() -> bool:  # (a docker machine's sshd may start listening late)
        return await listed() == list(fresh)

    with contextlib.suppress(TimeoutError):
        await wait_until(only_fresh, timeout=20)
    assert await listed() == list(fresh)
    await stack.write_file(mid, "servers.py", SERVERS.read_text())
    await stack.start_process(mid, ["python3", "servers.py", "http"], tag="http")
    port = await reported_port(stack, mid, "http")

    async def more() -> bool:
        return len(await listed()) > len(fresh)

    await wait_until(more, timeout=20)
    assert await listed() == sorted([*fresh, port])


#: Code a kernel runs: an HTTP server in a thread of the kernel's own process (as a notebook
#: starts a Gradio or Flask app), on a port the kernel gets; its result, the port.
SERVE_IN_KERNEL = """
import http.server, threading
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
threading.Thread(target=server.serve_forever, daemon=True).start()
server.server_address[1]
"""


async def test_a_code_kernels_own_ports_are_not_listed_but_a_server_it_runs_is(
    stack: FleetClient,
) -> None:
    """A code context's kernel listens on six loopback ports of its own (ZMQ's channels and
    its IOPub pipe): the platform's, not the user's, so none is listed; a server the user's
    code starts in the same kernel process is."""
    mid = await ready_machine(stack, "kernel")
    first = await stack.machines_code_run(machine_id=mid, code="1 + 1")
    assert first.error is None, first.error
    assert (await stack.machine_ports(mid)).ports == []
    served = await stack.machines_code_run(machine_id=mid, code=SERVE_IN_KERNEL)
    assert served.error is None, served.error
    port = int(main_text(served)[0])
    assert [p.port for p in (await stack.machine_ports(mid)).ports] == [port]
