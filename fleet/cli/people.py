"""`fleet users` and `fleet members`: people on the platform and on an instance
(docs/users.md)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contracts.people import INSTANCE_ROLES, PLATFORM_ROLES
from fleet.cli.common import SubAction, command, emit, group
from fleet.cli.defaults import token_path
from fleet.cli.render import table

if TYPE_CHECKING:
    import aiohttp

    from contracts.gateway.people import MemberList, User
    from fleet.client import FleetClient


def register(sub: SubAction) -> None:
    command(sub, "login", _login, "sign in with your identity provider (device flow); the "
            "token is kept in your config directory")  # fmt: skip
    u = group(sub, "users", "people on the platform (admin)")
    create = command(u, "create", _users_create, "create a user; prints their id")
    create.add_argument("email")
    create.add_argument("--name", default="")
    create.add_argument("--role", choices=PLATFORM_ROLES, default="member")
    command(u, "list", _users_list, "every user")
    role = command(u, "set-role", _users_set_role, "set a user's platform role")
    role.add_argument("user", help="an id or an email")
    role.add_argument("role", choices=PLATFORM_ROLES)
    command(u, "disable", _users_disable, "disable a user: their sessions and tokens stop "
            "at once").add_argument("user", help="an id or an email")  # fmt: skip
    command(u, "enable", _users_enable, "enable a disabled user again").add_argument(
        "user", help="an id or an email")  # fmt: skip
    m = group(sub, "members", "who may do what on an instance")
    command(m, "list", _members_list, "an instance's members").add_argument("instance_id")
    member = command(m, "set", _members_set, "give a user a role on an instance")
    member.add_argument("instance_id")
    member.add_argument("user", help="an id or an email")
    member.add_argument("role", choices=(*INSTANCE_ROLES, "none"), help="none: remove them")


def users_table(users: list[User]) -> str:
    rows = [[u.id, u.email, u.role, "disabled" if u.disabled else "-"] for u in users]
    return table(rows, ["ID", "EMAIL", "ROLE", "DISABLED"])


def members_table(members: MemberList) -> str:
    rows = [[m.user_id, m.email, m.role] for m in members.members]
    return table(rows, ["USER", "EMAIL", "ROLE"])


async def _users_create(c: FleetClient, a: argparse.Namespace) -> int:
    user = await c.create_user(a.email, name=a.name, role=a.role)
    return emit(a, user, lambda: user.id)


async def _users_list(c: FleetClient, a: argparse.Namespace) -> int:
    users = await c.list_users()
    return emit(a, users, lambda: users_table(users) if users else "no users")


async def _users_set_role(c: FleetClient, a: argparse.Namespace) -> int:
    user = await c.set_user_role(a.user, a.role)
    return emit(a, user, lambda: users_table([user]))


async def _users_disable(c: FleetClient, a: argparse.Namespace) -> int:
    user = await c.disable_user(a.user)
    return emit(a, user, lambda: users_table([user]))


async def _users_enable(c: FleetClient, a: argparse.Namespace) -> int:
    user = await c.enable_user(a.user)
    return emit(a, user, lambda: users_table([user]))


async def _members_list(c: FleetClient, a: argparse.Namespace) -> int:
    members = await c.list_members(a.instance_id)
    return emit(a, members, lambda: members_table(members))


async def _members_set(c: FleetClient, a: argparse.Namespace) -> int:
    members = await c.set_member(a.instance_id, a.user, a.role)
    return emit(a, members, lambda: members_table(members))


# --- fleet login ------------------------------------------------------------------------------
def save_token(secret: str) -> Path:
    """Write the token readable by this user only (0600, in a 0700 directory), never through
    a link planted where the file goes."""
    path = token_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, secret.encode() + b"\n")
    finally:
        os.close(fd)
    return path


async def _login(c: FleetClient, a: argparse.Namespace) -> int:
    import aiohttp  # here: only `fleet login` talks to the provider itself

    async with aiohttp.ClientSession() as s:
        got = await _device_flow(c, s)
    path = save_token(str(got["token"]))
    return emit(a, {"id": got["id"], "email": got["email"]},
                lambda: f"signed in as {got['email']}; token in {path}")  # fmt: skip


async def _device_flow(c: FleetClient, s: aiohttp.ClientSession) -> dict[str, Any]:
    """Show where to approve this sign-in, then wait (at the provider's pace) until it is."""
    import asyncio  # here: the parser (`fleet --help`) does without it

    start = await _post(c, s, "/auth/device", {})
    where = start.get("verificationUriComplete") or start["verificationUri"]
    print(f"Open {where} and confirm the code {start['userCode']}", flush=True)
    deadline = time.monotonic() + float(start["expiresIn"])
    while time.monotonic() < deadline:
        await asyncio.sleep(float(start["interval"]))  # the provider's pace (RFC 8628)
        got = await _post(c, s, "/auth/device/token", {"deviceCode": start["deviceCode"]})
        if not got.get("pending"):
            return got
    raise TimeoutError


async def _post(c: FleetClient, s: aiohttp.ClientSession, path: str,
                body: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    async with s.post(c.url + path, json=body) as resp:
        raw = await resp.read()
        if resp.status != 200:
            raise c.http_error(resp.status, raw)
        answer: dict[str, Any] = await resp.json()
        return answer
