"""``FleetClient``'s methods for people (a mixin: ``client.py`` is full): ``users.*``,
``instances.setMember``, ``instances.members``, and personal access tokens with scopes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from contracts import gateway_people as gp, gateway_rpc as g
from contracts.jsonrpc import NoParams, new_params
from contracts.people import InstanceRole, PlatformRole, Scope
from fleet.client_retry import Calls


class PeopleClient:
    async def create_user(self: Calls, email: str, *, name: str = "",
                          role: PlatformRole = "member") -> gp.User:  # fmt: skip
        params = new_params(gp.CreateUserParams, email=email, name=name, role=role)
        return await self.call(gp.USERS_CREATE, params)

    async def list_users(self: Calls) -> list[gp.User]:
        return (await self.call(gp.USERS_LIST, NoParams())).users

    async def set_user_role(self: Calls, user: str, role: PlatformRole) -> gp.User:
        """``user``: an id or an email; ``role``: admin, member or auditor."""
        params = new_params(gp.SetRoleParams, user=user, role=role)
        return await self.call(gp.USERS_SET_ROLE, params)

    async def disable_user(self: Calls, user: str) -> gp.User:
        return await self.call(gp.USERS_DISABLE, new_params(gp.UserParams, user=user))

    async def enable_user(self: Calls, user: str) -> gp.User:
        return await self.call(gp.USERS_ENABLE, new_params(gp.UserParams, user=user))

    async def set_member(
        self: Calls, instance_id: str, user: str, role: InstanceRole | Literal["none"]
    ) -> gp.MemberList:
        """``role``: owner, developer, viewer, or none (removes the user)."""
        params = new_params(gp.SetMemberParams, instance_id=instance_id, user=user, role=role)
        return await self.call(gp.INSTANCES_SET_MEMBER, params)

    async def list_members(self: Calls, instance_id: str) -> gp.MemberList:
        params = new_params(gp.MembersParams, instance_id=instance_id)
        return await self.call(gp.INSTANCES_MEMBERS, params)

    async def create_scoped_token(
        self: Calls,
        name: str,
        *,
        scopes: Sequence[Scope] | None = None,
        instance_ids: Sequence[str] | None = None,
        expires_in_s: int | None = None,
        user: str | None = None,
    ) -> g.CreatedToken:
        """A personal access token; ``.token`` is the secret, shown this once."""
        params = new_params(
            g.CreateTokenParams, name=name, scopes=list(scopes) if scopes else None,
            instance_ids=list(instance_ids) if instance_ids else None,
            expires_in_s=expires_in_s, user=user,
        )  # fmt: skip
        return await self.call(g.TOKENS_CREATE, params)
