"""People through the whole stack: a viewer is refused everything but looking, over /rpc, the
method stream, the WebSockets and the HTTP routes into a machine (codemode's stream and /mcp:
test_codemode_rights.py); a disabled user's open terminal closes within a revocation round
(well under 1 s). Each refusal and the cut are audit entries, read back through
audit.list and fleet audit."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import msgspec
import pytest

from contracts.errors import Forbidden, Unauthorized
from contracts.gateway.audit import Action
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from fleet.up.embedded import PortHold
from services.gateway.__main__ import build as gateway
from tests.conftest import ADMIN_TOKEN
from tests.integration.test_audit import fleet_audit
from tests.integration.test_audit_attacks import entries
from tests.integration.test_files_cli import _env
from tests.integration.test_gateway_events import until_caught_up
from tests.integration.test_ports import bearer, serve_in_machine
from tests.integration.test_refresh import ready_machine
from tests.integration.test_sessions import SHELL, Term
from tests.waiters import wait_until


async def member_client(stack: FleetClient, instance_id: str, email: str,
                        role: str) -> FleetClient:  # fmt: skip
    """A client holding a token of a user with ``role`` on the instance (every scope asked
    for: the role alone bounds it)."""
    await stack.create_user(email)
    await stack.set_member(instance_id, email, role)  # type: ignore[arg-type]
    made = await stack.create_scoped_token(f"{role}'s", user=email)
    return FleetClient(stack.url, made.token)


async def test_a_viewer_is_refused_over_rpc_websockets_and_http_routes(
    stack: FleetClient, settings: Settings, tmp_path: Path
) -> None:
    m = await serve_in_machine(stack, "viewed")
    opened = await stack.open_session(m.id, SHELL)
    viewer = await member_client(stack, m.instance_id, "viewer@example.com", "viewer")
    async with viewer:
        assert (await viewer.get_machine(m.id)).id == m.id
        for call in (viewer.exec(m.id, ["true"]), viewer.write_file(m.id, "x", "y"),
                     viewer.open_session(m.id, ["id"]), viewer.list_env(m.instance_id),
                     viewer.preview_ticket(m.id, m.http)):  # fmt: skip
            with pytest.raises(Forbidden):
                await call
        with pytest.raises(Forbidden):  # POST /rpc/stream: the method's own scope
            async for _ in viewer.exec_stream(m.id, ["true"]):
                pass
        with pytest.raises(Forbidden):  # the attach WebSocket: the gateway's error header
            await viewer.attach_session(m.id, opened.session_id)
        local = tmp_path / "up.txt"
        local.write_text("mine")
        with pytest.raises(Forbidden):  # a file's PUT
            await viewer.upload(m.id, local, "up.txt")
        with pytest.raises(Forbidden):  # a file's GET (no files:read either)
            await viewer.download(m.id, "servers.py", tmp_path / "down.py")
        base = f"http://127.0.0.1:{settings.port}"
        async with aiohttp.ClientSession() as s:
            with pytest.raises(aiohttp.WSServerHandshakeError) as tunnel:
                await s.ws_connect(f"{base}/machines/{m.id}/tunnel/{m.upper}",
                                   headers=bearer(viewer._token))  # fmt: skip
            assert tunnel.value.status == 403
    assert await stack.close_session(m.id, opened.session_id)

    # Each refusal is an entry naming the viewer, through audit.list and fleet audit.
    (user,) = [u.id for u in await stack.list_users() if u.email == "viewer@example.com"]
    got = await entries(stack, len(VIEWER_REFUSED), actor=user)
    assert sorted(e.method for e in got) == sorted(VIEWER_REFUSED)
    assert {(e.ok, e.error_code) for e in got} == {(False, Forbidden.code)}
    cli = await fleet_audit(settings, "--actor", user)
    assert sorted((e["method"], e["errorCode"]) for e in cli) == sorted(
        (m, Forbidden.code) for m in VIEWER_REFUSED)  # fmt: skip


#: What a viewer was refused above: over /rpc, the attach WebSocket, a file's PUT and GET, and
#: the tunnel WebSocket.
VIEWER_REFUSED = ("machines.exec", "machines.writeFile", "sessions.open", "env.list",
                  "machines.previewTicket", "machines.execStream", Action.TERMINAL_ATTACH,
                  Action.FILE_UPLOAD, Action.FILE_DOWNLOAD, Action.TUNNEL_OPEN)  # fmt: skip


async def test_a_disabled_users_open_terminal_and_event_stream_close(
    stack: FleetClient, settings: Settings
) -> None:
    m = await serve_in_machine(stack, "disabled")
    dev = await member_client(stack, m.instance_id, "dev@example.com", "developer")
    events = f"{stack.url}/events?machineId={m.id}"
    async with dev, aiohttp.ClientSession(headers=bearer(dev._token)) as s, s.get(events) as sse:
        await until_caught_up(sse)
        opened = await dev.open_session(m.id, SHELL)
        term = Term(await dev.attach_session(m.id, opened.session_id))
        await term.type("echo up-$((6*7))\n")
        await term.until(b"up-42")
        await stack.disable_user("dev@example.com")
        assert await term.to_close(timeout=5) is not None
        async with asyncio.timeout(5):
            async for _ in sse.content:
                pass  # read to the end: the gateway ends the stream
        with pytest.raises(Exception, match="token"):
            await dev.get_machine(m.id)
    # The cut, and the refused call after it, are entries naming the user.
    (user,) = [u.id for u in await stack.list_users() if u.email == "dev@example.com"]
    (cut,) = await entries(stack, 1, actor=user, method=Action.STREAMS_CUT)
    assert cut.params == {"eventStreams": 1, "byteStreams": 1}
    assert cut.token_id in [t.id for t in await stack.list_tokens() if t.name == "developer's"]
    (late,) = await entries(stack, 1, actor=user, method="machines.get")
    assert late.error == f"the user of token {cut.token_id} is disabled"
    cli = await fleet_audit(settings, "--actor", user, "--method", Action.STREAMS_CUT)
    assert [(e["tokenId"], e["params"]) for e in cli] == [(cut.token_id, cut.params)]


async def fleet_cli(settings: Settings, *args: str) -> str:
    """``fleet ARGS`` with the admin token; its stdout (exit 0 asserted)."""
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from fleet.cli.entry import main; main()", *args,
        env=_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode == 0, err
    return out.decode()


async def test_fleet_users_members_and_scoped_tokens(
    stack: FleetClient, settings: Settings
) -> None:
    inst = await stack.create_instance("cli")
    user_id = (await fleet_cli(settings, "users", "create", "cli@example.com")).strip()
    assert user_id.startswith("u-")
    assert "auditor" in await fleet_cli(settings, "users", "set-role", user_id, "auditor")
    members = await fleet_cli(settings, "members", "set", inst.id, "cli@example.com", "developer")
    assert "developer" in members
    made = await fleet_cli(settings, "tokens", "create", "ci", "--user", "cli@example.com",
                           "--instance", inst.id, "--scope", "machines:read",
                           "--expires-in", "600")  # fmt: skip
    token_id = made.split()[0]
    (token,) = [t for t in await stack.list_tokens() if t.id == token_id]
    assert token.scopes == ["machines:read"]
    assert token.instance_ids == [inst.id]
    assert token.user_id == user_id
    assert "disabled" in await fleet_cli(settings, "users", "disable", "cli@example.com")
    assert [u.disabled for u in await stack.list_users()] == [True]


#: The replicas' revocation round in the test below: far past anything it waits for, so
#: that only the notice between replicas can refuse the user or cut their streams in time.
LONG_ROUND_S = 60.0


async def replica(settings: Settings, es: AsyncExitStack) -> str:
    """Another gateway process's worth (its own NATS connections, store and caches) on the same
    servers, with a long revocation round; its URL."""
    # Its ports named before it starts, as `fleet up` names a replica's: held (`PortHold`).
    console, previews, e2b = (es.enter_context(PortHold()).port for _ in range(3))
    own = msgspec.structs.replace(settings, port=console, preview_port=previews, e2b_port=e2b,
                                  revocation_round_s=LONG_ROUND_S)  # fmt: skip
    await gateway(own, es)
    return f"http://127.0.0.1:{own.port}"


async def disable_unannounced(stack: FleetClient, store: Store, email: str) -> None:
    """Disable the user behind the gateways' backs, as if the notice of it were lost: through
    a Store of no gateway, which tells no replica."""
    (uid,) = [u.id for u in await stack.list_users() if u.email == email]
    user = await store.users.get(uid)
    assert user is not None
    await store.users.put(msgspec.structs.replace(user, disabled=True))


async def test_a_user_disabled_on_one_replica_is_refused_by_the_next_call_to_another(
    stack: FleetClient, settings: Settings, store: Store
) -> None:
    """Gateway A disables the user and tells the other replicas: B refuses the token at the
    very next call, though it keeps callers for a minute, and cuts the user's terminal and
    event stream there within a second, though its round is a minute long."""
    mid = await ready_machine(stack, "replicas")
    inst = (await stack.get_machine(mid)).instance_id
    dev = await member_client(stack, inst, "rep@example.com", "developer")
    async with AsyncExitStack() as es:
        a, b = await replica(settings, es), await replica(settings, es)
        admin_a = await es.enter_async_context(FleetClient(a, ADMIN_TOKEN))
        on_a = await es.enter_async_context(FleetClient(a, dev._token))
        on_b = await es.enter_async_context(FleetClient(b, dev._token))
        http = await es.enter_async_context(aiohttp.ClientSession(headers=bearer(dev._token)))
        sse = await es.enter_async_context(http.get(f"{b}/events?machineId={mid}"))
        await until_caught_up(sse)
        opened = await on_b.open_session(mid, SHELL)
        term = Term(await on_b.attach_session(mid, opened.session_id))
        await term.type("echo up-$((6*7))\n")
        await term.until(b"up-42")
        await on_a.get_machine(mid)  # each replica has resolved the token, and keeps it

        await disable_unannounced(stack, store, "rep@example.com")
        assert (await on_b.get_machine(mid)).id == mid  # no notice: B serves what it kept

        await admin_a.disable_user("rep@example.com")
        for client in (on_b, on_a):  # at once, with no wait
            with pytest.raises(Unauthorized):
                await client.get_machine(mid)
        assert await term.to_close(timeout=5) is not None
        async with asyncio.timeout(5):
            async for _ in sse.content:
                pass  # read to the end: B ends the stream


async def test_a_change_whose_notice_is_lost_reaches_a_replica_within_the_round(
    stack: FleetClient, store: Store
) -> None:
    """The notice is at-most-once; without it, a replica still forgets the caller it keeps
    within its revocation round (0.5 s)."""
    inst = await stack.create_instance("unannounced")
    dev = await member_client(stack, inst.id, "lost@example.com", "developer")
    async with dev:
        await dev.get_instance(inst.id)  # resolved, and kept
        await disable_unannounced(stack, store, "lost@example.com")

        async def refused() -> bool:
            try:
                await dev.get_instance(inst.id)
            except Unauthorized:
                return True
            return False

        await wait_until(refused, timeout=5)
