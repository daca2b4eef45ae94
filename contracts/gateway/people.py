"""People on the platform: ``users.*`` and an instance's members (``instances.setMember``).

A user is made on first sign-in (``services.gateway.console.oidc``) or by an admin here; ``user`` in
params is a user's id or email. Disabling a user ends, within a revocation round, everything
their sessions and tokens hold open on every gateway replica.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from contracts.errors import Conflict, Forbidden, NotFound
from contracts.gateway.types import InstanceId, UserRef
from contracts.models import Model
from contracts.people import InstanceRole, PlatformRole
from contracts.rpc.jsonrpc import AnySpec, ClientMethod, MethodSpec, NoParams, Params, Result

Email = Annotated[str, msgspec.Meta(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]


class User(Model, kw_only=True):
    id: str
    email: str
    name: str = ""
    role: PlatformRole = "member"
    disabled: bool = False
    created_at: datetime
    #: The OpenID provider's subject (``iss`` and ``sub``) of a user who signed in.
    subject: str | None = None
    #: ``role`` came from the provider's groups (FLEET_OIDC_ADMIN_GROUPS, _AUDITOR_GROUPS),
    #: not from users.setRole: a sign-in whose groups no longer grant it makes them a member.
    role_from_groups: bool = False


class CreateUserParams(Params, kw_only=True):
    email: Email
    name: Annotated[str, msgspec.Meta(max_length=200)] = ""
    role: PlatformRole = "member"


class UserList(Result, kw_only=True):
    users: list[User]


class SetRoleParams(Params, kw_only=True):
    user: UserRef
    role: PlatformRole


class UserParams(Params, kw_only=True):
    user: UserRef


class SetMemberParams(Params, kw_only=True):
    instance_id: InstanceId
    user: UserRef
    #: ``none`` removes the user from the instance.
    role: InstanceRole | Literal["none"]


class Member(Model, kw_only=True):
    user_id: str
    email: str
    role: InstanceRole


class MemberList(Result, kw_only=True):
    members: list[Member]


class MembersParams(Params, kw_only=True):
    instance_id: InstanceId


_E = (NotFound, Forbidden)
USERS_CREATE = MethodSpec(
    "users.create",
    CreateUserParams,
    User,
    "Create a user (admins).",
    (Conflict, Forbidden),
    scope="admin",
    client=ClientMethod("create_user", "email"),
)
USERS_LIST = MethodSpec(
    "users.list",
    NoParams,
    UserList,
    "Every user (admins).",
    (Forbidden,),
    scope="admin",
    reads=True,
    client=ClientMethod("list_users", unwrap="users"),
)
USERS_SET_ROLE = MethodSpec(
    "users.setRole",
    SetRoleParams,
    User,
    "Set a user's platform role (admins).",
    _E,
    scope="admin",
    client=ClientMethod("set_user_role", "user role"),
)
USERS_DISABLE = MethodSpec(
    "users.disable", UserParams, User,
    "Disable a user: their sessions and tokens stop working at once (admins).", _E,
    scope="admin", client=ClientMethod("disable_user", "user"),
)  # fmt: skip
USERS_ENABLE = MethodSpec(
    "users.enable", UserParams, User,
    "Enable a disabled user again: they can sign in, and their unexpired tokens work again "
    "(their sessions ended with the disable) (admins).", _E,
    scope="admin", client=ClientMethod("enable_user", "user"),
)  # fmt: skip
INSTANCES_SET_MEMBER = MethodSpec(
    "instances.setMember", SetMemberParams, MemberList,
    "Give a user a role on an instance (owner, developer, viewer; none removes them).", _E,
    scope="admin", client=ClientMethod("set_member", "instance_id user role"),
)  # fmt: skip
INSTANCES_MEMBERS = MethodSpec(
    "instances.members",
    MembersParams,
    MemberList,
    "An instance's members and roles.",
    _E,
    scope="machines:read",
    reads=True,
    client=ClientMethod("list_members", "instance_id"),
)
PEOPLE_METHODS: tuple[AnySpec, ...] = (
    USERS_CREATE, USERS_LIST, USERS_SET_ROLE, USERS_DISABLE, USERS_ENABLE, INSTANCES_SET_MEMBER,
    INSTANCES_MEMBERS,
)  # fmt: skip
