"""Sign-in through a real OpenID provider (tests/oidc_provider.py): the code flow with PKCE up to
a session cookie, first sign-in making the user, groups making admins, the session's CSRF
token, a replayed state, and sign-out ending the session server-side."""

from __future__ import annotations

import asyncio
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.oidc_provider import (
    ADMIN_GROUP,
    CLIENT_ID,
    CLIENT_SECRET,
    approve_device,
    sign_in,
)
from tests.waiters import wait_until


@pytest.fixture
def settings(settings: Settings, oidc_issuer: str) -> Settings:
    return msgspec.structs.replace(
        settings, oidc_issuer=oidc_issuer, oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET, oidc_admin_groups=ADMIN_GROUP,
    )  # fmt: skip


def browser() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # 127.0.0.1's


async def rpc(s: aiohttp.ClientSession, base: str, method: str, params: dict[str, Any],
              csrf: str | None) -> tuple[int, dict[str, Any]]:  # fmt: skip
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    async with s.post(f"{base}/rpc", json=body, headers=headers) as r:
        return r.status, await r.json()


async def test_sign_in_makes_the_user_and_a_session_that_sign_out_ends(
    stack: FleetClient, settings: Settings
) -> None:
    base = f"http://127.0.0.1:{settings.port}"
    inst = await stack.create_instance("bobs")
    async with browser() as s:
        answer, callback = await sign_in(s, f"{base}/auth/login", "bob")
        assert answer.status == 302, await answer.text()
        async with s.get(f"{base}/auth/me") as r:
            me = await r.json()
        assert (me["email"], me["role"]) == ("bob@example.com", "member")
        assert me["id"].startswith("u-")
        await stack.set_member(inst.id, "bob@example.com", "viewer")
        status, listed = await rpc(s, base, "instances.list", {}, me["csrfToken"])
        assert [i["id"] for i in listed["result"]["instances"]] == [inst.id]
        status, refused = await rpc(s, base, "instances.list", {}, None)
        assert (status, refused["error"]["code"]) == (403, 1082)  # CsrfRejected
        async with s.get(callback) as replayed:
            assert replayed.status == 400
            assert (await replayed.json())["error"]["code"] == 1081  # SignInStateRejected
        async with s.post(f"{base}/auth/logout", headers={"X-CSRF-Token": me["csrfToken"]}) as r:
            assert (await r.json()) == {"signedOut": True}
        async with s.get(f"{base}/auth/me") as r:
            assert r.status == 401
    assert [u.email for u in await stack.list_users()] == ["bob@example.com"]

    # Each sign-in, refused or not, and the sign-out, in the audit log (written without
    # waiting: read until they are there).
    async def audited() -> list[tuple[str, str, int | None]]:
        got = await stack.audit(method="auth.signIn") + await stack.audit(method="auth.signOut")
        return sorted((e.method, e.actor, e.error_code) for e in got)

    await wait_until(lambda: _three(audited), timeout=10)
    assert await audited() == [("auth.signIn", "anonymous", 1081),
                               ("auth.signIn", me["id"], None),
                               ("auth.signOut", me["id"], None)]  # fmt: skip


async def _three(entries: Any) -> bool:
    return len(await entries()) == 3


async def test_an_admin_group_makes_an_admin_and_a_disabled_user_cannot_sign_in(
    stack: FleetClient, settings: Settings
) -> None:
    base = f"http://127.0.0.1:{settings.port}"
    async with browser() as s:
        await sign_in(s, f"{base}/auth/login", "ann")
        async with s.get(f"{base}/auth/me") as r:
            assert (await r.json())["role"] == "admin"
        await stack.disable_user("ann@example.com")
        async with s.get(f"{base}/auth/me") as r:  # the session ended with the user
            assert r.status == 401
        answer, _ = await sign_in(s, f"{base}/auth/login", "ann")
        assert answer.status == 403


async def test_a_refused_sign_in_in_a_browser_is_a_page_that_links_back(
    stack: FleetClient, settings: Settings
) -> None:
    """The browser a refused sign-in comes back to reads why (here: a disabled user), and a
    link back to the console's sign-in; an API client of the same flow gets the JSON."""
    base = f"http://127.0.0.1:{settings.port}"
    await stack.create_user("dora@example.com")
    await stack.disable_user("dora@example.com")
    page_load = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     headers=page_load) as s:  # fmt: skip
        answer, _ = await sign_in(s, f"{base}/auth/login", "dora")
        page = await answer.text()
    assert (answer.status, answer.content_type) == (403, "text/html")
    assert "<h1>Sign-in refused</h1>" in page
    assert "user dora@example.com is disabled" in page
    assert '<a href="/">Back to sign-in</a>' in page
    async with browser() as s:
        answer, _ = await sign_in(s, f"{base}/auth/login", "dora")
        assert (await answer.json())["error"]["message"] == "user dora@example.com is disabled"


async def test_fleet_login_signs_in_with_the_device_flow_and_keeps_its_token_0600(
    stack: FleetClient, settings: Settings, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{settings.port}"
    env = {k: v for k, v in os.environ.items() if k != "FLEET_TOKEN"}
    env |= {"FLEET_URL": base, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from fleet.cli.entry import main; main()", "login", env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip
    assert cli.stdout is not None
    shown = (await asyncio.wait_for(cli.stdout.readline(), 30)).decode()
    found = re.search(r"Open (\S+) and confirm the code (\S+)", shown)
    assert found is not None, shown
    async with browser() as s:
        await approve_device(s, found.group(1), "dora")
    out, err = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode == 0, err
    saved = tmp_path / "config" / "fleet" / "token"
    assert b"signed in as dora@example.com" in out
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    async with FleetClient(base, saved.read_text().strip()) as dora:
        assert await dora.list_instances() == []  # a member of nothing yet
    (token,) = await stack.list_tokens()
    assert token.user_id == (await stack.list_users())[0].id
    assert token.expires_at is not None
