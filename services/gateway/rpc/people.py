"""People: ``users.*``, an instance's members, and personal access tokens (``tokens.create``).

Who may do what is decided by ``Caller`` (services.gateway.auth.access); these handlers keep the
records. A token holds no more than its creator could hand out: the scopes it asks for on each
of its instances, which the creator must hold there; at use it is bounded again by its user's
roles of that moment, so a demoted user's tokens shrink with them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog

from contracts.errors import Conflict, Forbidden, InvalidParams, NotFound
from contracts.gateway.people import (
    INSTANCES_MEMBERS,
    INSTANCES_SET_MEMBER,
    USERS_CREATE,
    USERS_DISABLE,
    USERS_ENABLE,
    USERS_LIST,
    USERS_SET_ROLE,
    CreateUserParams,
    Member,
    MemberList,
    MembersParams,
    SetMemberParams,
    SetRoleParams,
    User,
    UserList,
    UserParams,
)
from contracts.gateway.rpc import CreatedToken, CreateTokenParams
from contracts.ids import USER_ID_RE, new_user_id
from contracts.models import AccessToken
from contracts.people import ADMIN, ALL_SCOPES
from contracts.rpc.jsonrpc import NoParams, handles
from controlplane.security.tokens import TokenStore
from controlplane.settings import Settings
from controlplane.store import Store
from services.gateway.auth import Caller

log = structlog.get_logger(__name__)


async def find_user(store: Store, ref: str) -> User:
    """The user ``ref`` names: an id (``u-...``) or an email."""
    user_id = ref if USER_ID_RE.fullmatch(ref) else await store.users.id_by_email(ref)
    user = await store.users.get(user_id) if user_id is not None else None
    if user is None:
        raise NotFound(f"user {ref} not found", data={"user": ref})
    return user


async def add_user(store: Store, email: str, name: str, role: str,
                   subject: str | None = None) -> User:  # fmt: skip
    user = User(id=new_user_id(), email=email, name=name, role=role,  # type: ignore[arg-type]
                created_at=datetime.now(UTC), subject=subject)  # fmt: skip
    if not await store.users.add(user):
        raise Conflict(f"a user with email {email} exists", data={"email": email})
    log.info("user.created", user_id=user.id, role=role)
    return user


def may_see(c: Caller, token: AccessToken) -> bool:
    """A token is its user's, and the business of whoever administers all its instances."""
    if c.admin or (c.user_id is not None and token.user_id == c.user_id):
        return True
    return bool(token.instance_ids) and all(c.may(i, ADMIN) for i in token.instance_ids or ())


class PeopleOps:
    def __init__(self, store: Store, tokens: TokenStore, settings: Settings) -> None:
        self.store = store
        self.tokens = tokens
        self.settings = settings

    @handles(USERS_CREATE)
    async def users_create(self, p: CreateUserParams, c: Caller) -> User:
        c.require(None)
        return await add_user(self.store, p.email, p.name, p.role)

    @handles(USERS_LIST)
    async def users_list(self, p: NoParams, c: Caller) -> UserList:
        c.require(None)
        users = [await self.store.users.get(i) for i in await self.store.users.ids()]
        return UserList(users=[u for u in users if u is not None])

    @handles(USERS_SET_ROLE)
    async def users_set_role(self, p: SetRoleParams, c: Caller) -> User:
        c.require(None)
        user = await find_user(self.store, p.user)
        user.role, user.role_from_groups = p.role, False
        await self.store.users.put(user)
        log.info("user.role_set", user_id=user.id, role=p.role, by=c.token_id)
        return user

    @handles(USERS_DISABLE)
    async def users_disable(self, p: UserParams, c: Caller) -> User:
        """Their sessions end; their tokens stop resolving on every replica, and what any of
        them holds open ends in the revocation round that the change sets off on each
        (services.gateway.auth.caller_notices, services.gateway.streams.revocation)."""
        c.require(None)
        user = await find_user(self.store, p.user)
        user.disabled = True
        await self.store.users.put(user)
        await self.store.users.end_sessions(user.id)
        log.info("user.disabled", user_id=user.id, by=c.token_id)
        return user

    @handles(USERS_ENABLE)
    async def users_enable(self, p: UserParams, c: Caller) -> User:
        c.require(None)
        user = await find_user(self.store, p.user)
        user.disabled = False
        await self.store.users.put(user)
        log.info("user.enabled", user_id=user.id, by=c.token_id)
        return user

    @handles(INSTANCES_SET_MEMBER)
    async def instances_set_member(self, p: SetMemberParams, c: Caller) -> MemberList:
        c.require(p.instance_id)
        await self.store.get_instance(p.instance_id)
        user = await find_user(self.store, p.user)
        role = None if p.role == "none" else p.role
        await self.store.users.set_member(p.instance_id, user.id, role)
        log.info("instance.member_set", instance_id=p.instance_id, user_id=user.id, role=p.role,
                 by=c.token_id)  # fmt: skip
        return await self._members(p.instance_id)

    @handles(INSTANCES_MEMBERS)
    async def instances_members(self, p: MembersParams, c: Caller) -> MemberList:
        c.require(p.instance_id)
        await self.store.get_instance(p.instance_id)
        return await self._members(p.instance_id)

    async def _members(self, instance_id: str) -> MemberList:
        members = []
        for user_id, role in sorted((await self.store.users.members(instance_id)).items()):
            user = await self.store.users.get(user_id)
            if user is not None:
                members.append(Member(user_id=user_id, email=user.email, role=role))  # type: ignore[arg-type]
        return MemberList(members=members)

    # --- personal access tokens -------------------------------------------------------------
    async def tokens_create(self, p: CreateTokenParams, c: Caller) -> CreatedToken:
        want = frozenset(p.scopes or ALL_SCOPES)
        instance_ids = p.instance_ids or ([p.instance_id] if p.instance_id else None)
        owner = await self._owner(p.user, c)
        if instance_ids is None:
            self._check_everywhere(want, owner, c)
        else:
            for instance_id in instance_ids:
                await self.store.get_instance(instance_id)
                missing = want - c.held(instance_id)
                if missing:
                    raise Forbidden(
                        f"this caller may not hand out {', '.join(sorted(missing))} on "
                        f"instance {instance_id}",
                        data={"scope": min(missing), "instanceId": instance_id},
                    )  # fmt: skip
        token, secret = await self.tokens.create(
            p.name, scopes=want, instance_ids=instance_ids, user_id=owner,
            expires_at=datetime.now(UTC) + timedelta(seconds=self._ttl_s(p.expires_in_s)),
        )  # fmt: skip
        log.info("token.created", token_id=token.id, user_id=owner, by=c.token_id)
        return CreatedToken(id=token.id, token=secret)

    async def _owner(self, ref: str | None, c: Caller) -> str | None:
        """Whose token it is: the caller's own, or (an admin's choice) another user's."""
        if ref is None:
            return c.user_id
        user = await find_user(self.store, ref)
        if user.id != c.user_id and not c.may(None, ADMIN):
            raise Forbidden("only an admin may make a token for another user")
        return user.id

    @staticmethod
    def _check_everywhere(want: frozenset[str], owner: str | None, c: Caller) -> None:
        """A token for every instance its user may reach: not from a caller bound to fewer
        instances or scopes; without a user, only from the admin token."""
        narrowed = c.instance_ids is not None or c.instance_id is not None
        if not c.admin and (narrowed or (c.scopes is not None and not want <= c.scopes)):
            raise Forbidden("this caller may not make a token for every instance")
        if owner is None and not c.admin:
            raise Forbidden("a token of no user, for every instance, takes the admin token")

    def _ttl_s(self, asked: int | None) -> int:
        most = self.settings.token_max_ttl_s
        if asked is not None and asked > most:
            raise InvalidParams(f"field `expiresInS`: at most {most} seconds",
                                field="$.expiresInS")  # fmt: skip
        return asked or min(self.settings.token_default_ttl_s, most)
