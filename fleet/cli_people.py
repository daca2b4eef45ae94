"""`fleet users` and `fleet members`: people on the platform and on an instance
(docs/users.md)."""

from __future__ import annotations

import argparse

from contracts.gateway_people import MemberList, User
from contracts.people import INSTANCE_ROLES, PLATFORM_ROLES
from fleet.cli_common import SubAction, command, emit, group
from fleet.client import FleetClient
from fleet.render import table


def register(sub: SubAction) -> None:
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


async def _members_list(c: FleetClient, a: argparse.Namespace) -> int:
    members = await c.list_members(a.instance_id)
    return emit(a, members, lambda: members_table(members))


async def _members_set(c: FleetClient, a: argparse.Namespace) -> int:
    members = await c.set_member(a.instance_id, a.user, a.role)
    return emit(a, members, lambda: members_table(members))
