"""Users, roles and personal access tokens through the gateway's dispatcher: who may do what is
decided by ``Caller`` alone, for users (by role) and tokens (by scope, instance and expiry,
within their user's role)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from redis.typing import EncodableT, FieldT

from contracts.errors import Conflict, Forbidden, IdTokenRejected, InvalidParams, NotFound
from contracts.gateway.people import User
from contracts.models import AccessToken
from controlplane.security.tokens import hash_token, new_secret
from services.gateway.auth import Caller
from services.gateway.auth.callers import caller_is_live, caller_resolver, user_caller
from services.gateway.console import SignIn, WebSessions
from services.gateway.rpc.people import find_user
from tests.fast.conftest import World

method = pytest.mark.gateway_method


async def as_user(world: World, email: str) -> Caller:
    """The caller of a signed-in user, as a session resolves them."""
    user = await find_user(world.store, email)
    return await user_caller(world.store, "s-test", user)


async def with_member(world: World, role: str) -> tuple[str, Caller]:
    """A ready machine's instance, and a member user of it with ``role``."""
    machine = await world.ready_machine()
    await world.rpc("users.create", {"email": f"{role}@example.com"})
    await world.rpc("instances.setMember",
                    {"instanceId": machine.instance_id, "user": f"{role}@example.com",
                     "role": role})  # fmt: skip
    return machine.id, await as_user(world, f"{role}@example.com")


@method("users.create", "users.list", "users.setRole")
async def test_users_are_made_listed_and_given_roles_by_admins(world: World) -> None:
    ann = await world.rpc("users.create", {"email": "ann@example.com", "name": "Ann"})
    assert ann["id"].startswith("u-")
    assert ann["role"] == "member"
    assert not ann["disabled"]
    with pytest.raises(Conflict):
        await world.rpc("users.create", {"email": "ANN@example.com"})
    with pytest.raises(InvalidParams):
        await world.rpc("users.create", {"email": "not-an-email"})
    assert [u["email"] for u in (await world.rpc("users.list"))["users"]] == ["ann@example.com"]
    by_email = await world.rpc("users.setRole", {"user": "ann@example.com", "role": "auditor"})
    assert by_email["role"] == "auditor"
    by_id = await world.rpc("users.setRole", {"user": ann["id"], "role": "admin"})
    assert by_id["role"] == "admin"
    with pytest.raises(NotFound):
        await world.rpc("users.setRole", {"user": "bob@example.com", "role": "member"})
    member = await world.rpc("users.create", {"email": "bob@example.com"})
    bob = await as_user(world, member["email"])
    for name, params in (
        ("users.list", {}),
        ("users.create", {"email": "x@example.com"}),
        ("users.setRole", {"user": "bob@example.com", "role": "admin"}),
    ):
        with pytest.raises(Forbidden):
            await world.rpc(name, params, bob)


@method("instances.setMember", "instances.members", "instances.create", "instances.list")
async def test_a_member_owns_what_they_make_and_sees_only_their_instances(world: World) -> None:
    await world.rpc("users.create", {"email": "ann@example.com"})
    await world.rpc("users.create", {"email": "bob@example.com"})
    ann = await as_user(world, "ann@example.com")
    other = await world.instance("not-anns")
    mine = await world.rpc("instances.create", {"name": "anns"}, ann)
    ann = await as_user(world, "ann@example.com")  # the next call reads her new role
    listed = await world.rpc("instances.list", {}, ann)
    assert [i["id"] for i in listed["instances"]] == [mine["id"]]
    with pytest.raises(Forbidden):
        await world.rpc("instances.get", {"instanceId": other.id}, ann)
    members = await world.rpc("instances.setMember",
                              {"instanceId": mine["id"], "user": "bob@example.com",
                               "role": "viewer"}, ann)  # fmt: skip
    assert sorted(m["role"] for m in members["members"]) == ["owner", "viewer"]
    bob = await as_user(world, "bob@example.com")
    with pytest.raises(Forbidden):  # a viewer manages nobody
        await world.rpc("instances.setMember", {"instanceId": mine["id"],
                        "user": "bob@example.com", "role": "owner"}, bob)  # fmt: skip
    assert (
        len((await world.rpc("instances.members", {"instanceId": mine["id"]}, bob))["members"]) == 2
    )
    gone = await world.rpc("instances.setMember", {"instanceId": mine["id"],
                           "user": "bob@example.com", "role": "none"}, ann)  # fmt: skip
    assert [m["role"] for m in gone["members"]] == ["owner"]
    with pytest.raises(Forbidden):
        await world.rpc("instances.get", {"instanceId": mine["id"]},
                        await as_user(world, "bob@example.com"))  # fmt: skip


async def test_a_viewer_sees_machines_and_logs_and_nothing_else(world: World) -> None:
    machine_id, viewer = await with_member(world, "viewer")
    instance_id = (await world.machine(machine_id)).instance_id
    assert (await world.rpc("machines.get", {"machineId": machine_id}, viewer))["id"] == machine_id
    assert await world.rpc("machines.list", {}, viewer)
    await world.rpc("machines.daemonLog", {"machineId": machine_id}, viewer)
    refused: dict[str, dict[str, Any]] = {
        "machines.exec": {"machineId": machine_id, "command": ["true"]},
        "sessions.open": {"machineId": machine_id, "command": ["sh"]},
        "machines.writeFile": {"machineId": machine_id, "path": "a", "content": "x"},
        "machines.readFile": {"machineId": machine_id, "path": "a"},
        "machines.previewTicket": {"machineId": machine_id, "port": 3000},
        "machines.ports": {"machineId": machine_id},
        "env.list": {"instanceId": instance_id},
        "tokens.create": {"name": "mine", "instanceId": instance_id},
    }
    for name, params in refused.items():
        with pytest.raises(Forbidden) as no:
            await world.rpc(name, params, viewer)
        assert no.value.data is not None, name
        assert no.value.data["scope"] != "machines:read", name


async def test_env_values_are_for_owners_and_developers(world: World) -> None:
    machine_id, dev = await with_member(world, "developer")
    instance_id = (await world.machine(machine_id)).instance_id
    await world.rpc("env.set", {"instanceId": instance_id, "name": "A", "value": "1"}, dev)
    assert (await world.rpc("env.list", {"instanceId": instance_id}, dev))["vars"]
    with pytest.raises(Forbidden):  # the platform's variables are the admin's
        await world.rpc("env.list", {}, dev)
    with pytest.raises(Forbidden):  # and so are the instance's members
        await world.rpc("instances.setMember", {"instanceId": instance_id,
                        "user": "developer@example.com", "role": "owner"}, dev)  # fmt: skip


@method("users.disable")
async def test_a_disabled_user_and_their_tokens_stop_at_once(world: World) -> None:
    machine_id, dev = await with_member(world, "developer")
    instance_id = (await world.machine(machine_id)).instance_id
    made = await world.rpc("tokens.create", {"name": "ci", "instanceIds": [instance_id],
                                             "scopes": ["machines:exec"]}, dev)  # fmt: skip
    resolve = caller_resolver(world.settings.admin_token, world.api.tokens, world.store,
                              world.settings.revocation_round_s)  # fmt: skip
    assert await resolve(made["token"]) is not None
    assert await caller_is_live(world.store, made["id"])
    await world.rpc("users.disable", {"user": "developer@example.com"})
    assert await resolve(made["token"]) is None
    assert not await caller_is_live(world.store, made["id"])  # the revocation round cuts it


@method("users.enable")
async def test_an_enabled_user_signs_in_and_their_unexpired_tokens_work_again(
    world: World,
) -> None:
    machine_id, dev = await with_member(world, "developer")
    instance_id = (await world.machine(machine_id)).instance_id
    made = await world.rpc("tokens.create", {"name": "ci", "instanceIds": [instance_id],
                                             "scopes": ["machines:exec"]}, dev)  # fmt: skip
    resolve = caller_resolver(world.settings.admin_token, world.api.tokens, world.store,
                              world.settings.revocation_round_s)  # fmt: skip
    await world.rpc("users.disable", {"user": "developer@example.com"})
    assert await resolve(made["token"]) is None
    with pytest.raises(Forbidden):  # an admin's method
        await world.rpc("users.enable", {"user": "developer@example.com"}, dev)
    got = await world.rpc("users.enable", {"user": "developer@example.com"})
    assert got["disabled"] is False
    assert await resolve(made["token"]) is not None
    with pytest.raises(NotFound):
        await world.rpc("users.enable", {"user": "nobody@example.com"})


@method("tokens.create")
async def test_a_token_is_refused_outside_its_scope_instance_and_time(world: World) -> None:
    machine_id, dev = await with_member(world, "developer")
    instance_id = (await world.machine(machine_id)).instance_id
    other = await world.ready_machine()
    resolve = caller_resolver(world.settings.admin_token, world.api.tokens, world.store,
                              world.settings.revocation_round_s)  # fmt: skip
    made = await world.rpc("tokens.create", {"name": "ci", "instanceIds": [instance_id],
                           "scopes": ["machines:exec", "machines:read"]}, dev)  # fmt: skip
    ci = await resolve(made["token"])
    assert ci is not None
    assert not ci.admin
    await world.rpc("machines.exec", {"machineId": machine_id, "command": ["true"]}, ci)
    with pytest.raises(Forbidden):  # outside its scopes
        await world.rpc("machines.writeFile", {"machineId": machine_id, "path": "a",
                                               "content": "x"}, ci)  # fmt: skip
    with pytest.raises(Forbidden):  # outside its instances
        await world.rpc("machines.exec", {"machineId": other.id, "command": ["true"]}, ci)
    with pytest.raises(Forbidden):  # more than its maker holds
        await world.rpc("tokens.create", {"name": "x", "instanceIds": [other.instance_id]}, dev)
    with pytest.raises(InvalidParams):
        await world.rpc("tokens.create", {"name": "x", "expiresInS": 10**9}, dev)
    short = await world.rpc("tokens.create", {"name": "s", "expiresInS": 1}, dev)
    record = await world.store.tokens.get(short["id"])
    assert record is not None
    assert record.token.expires_at is not None
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    await world.store.redis.hset(world.store.keys.k_token(short["id"]), "expiresAt", past)
    assert await resolve(short["token"]) is None  # after its expiry
    assert not await caller_is_live(world.store, short["id"])


async def test_a_demoted_users_token_shrinks_with_them(world: World) -> None:
    machine_id, dev = await with_member(world, "developer")
    instance_id = (await world.machine(machine_id)).instance_id
    made = await world.rpc("tokens.create", {"name": "ci"}, dev)
    resolve = caller_resolver(world.settings.admin_token, world.api.tokens, world.store,
                              world.settings.revocation_round_s)  # fmt: skip
    before = await resolve(made["token"])
    assert before is not None
    await world.rpc("machines.exec", {"machineId": machine_id, "command": ["true"]}, before)
    await world.rpc("instances.setMember", {"instanceId": instance_id,
                    "user": "developer@example.com", "role": "viewer"})  # fmt: skip
    after = await resolve(made["token"])
    assert after is not None
    with pytest.raises(Forbidden):
        await world.rpc("machines.exec", {"machineId": machine_id, "command": ["true"]}, after)
    await world.rpc("machines.get", {"machineId": machine_id}, after)


@method("tokens.list", "tokens.revoke")
async def test_an_admin_names_another_users_token_and_a_member_cannot(world: World) -> None:
    await world.rpc("users.create", {"email": "ann@example.com"})
    await world.rpc("users.create", {"email": "bob@example.com"})
    made = await world.rpc("tokens.create", {"name": "for-ann", "user": "ann@example.com"})
    ann = await as_user(world, "ann@example.com")
    assert [t["id"] for t in (await world.rpc("tokens.list", {}, ann))["tokens"]] == [made["id"]]
    with pytest.raises(Forbidden):
        await world.rpc("tokens.create", {"name": "x", "user": "bob@example.com"}, ann)
    bob = await as_user(world, "bob@example.com")
    assert (await world.rpc("tokens.list", {}, bob))["tokens"] == []
    with pytest.raises(Forbidden):
        await world.rpc("tokens.revoke", {"id": made["id"]}, bob)
    assert (await world.rpc("tokens.revoke", {"id": made["id"]}, ann))["revoked"]


async def test_tokens_kept_before_scopes_are_migrated_as_they_were(world: World) -> None:
    """A record in the shape instance tokens were kept in: every scope on its one instance."""
    machine = await world.ready_machine()
    secret = new_secret()
    token_id, digest = "t-00000000000000aa", hash_token(secret)
    legacy: dict[FieldT, EncodableT] = {
        "id": token_id,
        "name": "old",
        "instanceId": machine.instance_id,
        "createdAt": datetime.now(UTC).isoformat(),
        "hash": digest,
    }
    await world.store.redis.hset(world.store.keys.k_token(token_id), mapping=legacy)
    await world.store.redis.hset(world.store.keys.K_TOKEN_HASHES, digest, token_id)
    await world.store.redis.zadd(world.store.keys.K_TOKENS, {token_id: 1.0})
    assert await world.store.tokens.migrate() == 1
    assert await world.store.tokens.migrate() == 0
    record = await world.store.tokens.get(token_id)
    assert record is not None
    token: AccessToken = record.token
    assert token.instance_ids == [machine.instance_id]
    assert "files:write" in token.scopes
    resolve = caller_resolver(world.settings.admin_token, world.api.tokens, world.store,
                              world.settings.revocation_round_s)  # fmt: skip
    caller = await resolve(secret)
    assert caller is not None
    assert not caller.admin
    await world.rpc("machines.exec", {"machineId": machine.id, "command": ["true"]}, caller)
    other = await world.ready_machine()
    with pytest.raises(Forbidden):
        await world.rpc("machines.get", {"machineId": other.id}, caller)


def vouched(sub: str, email: str, **more: Any) -> dict[str, Any]:
    """Validated claims of a sign-in whose provider vouches for ``email``."""
    return {"iss": "https://idp", "sub": sub, "email": email, "email_verified": True, **more}


async def test_a_role_the_groups_gave_goes_with_them_one_an_admin_set_stays(
    world: World,
) -> None:
    settings = msgspec.structs.replace(world.settings, oidc_admin_groups="ops",
                                       oidc_auditor_groups="audit")  # fmt: skip
    signin = SignIn(world.store, settings, None, WebSessions(world.store, settings))

    async def sign_in(email: str, *groups: str) -> str:
        return (await signin.user_of(vouched(email, email, groups=list(groups)))).role

    assert await sign_in("ann@example.com", "ops") == "admin"
    assert await sign_in("ann@example.com", "audit") == "auditor"
    assert await sign_in("ann@example.com") == "member"  # out of both groups
    assert await sign_in("bob@example.com") == "member"
    await world.rpc("users.setRole", {"user": "bob@example.com", "role": "admin"})
    assert await sign_in("bob@example.com") == "admin"  # set by an admin: not the groups'
    assert await sign_in("bob@example.com", "audit") == "auditor"
    assert await sign_in("bob@example.com") == "member"  # the groups' now, gone with them


async def test_an_admin_made_user_is_bound_once_and_only_through_a_vouched_email(
    world: World,
) -> None:
    signin = SignIn(world.store, world.settings, None, WebSessions(world.store, world.settings))
    carol = await world.rpc("users.create", {"email": "carol@example.com", "role": "admin"})
    for verified in (False, "false", 1, None):
        with pytest.raises(IdTokenRejected) as no:
            await signin.user_of(vouched("eve", "carol@example.com", email_verified=verified))
        assert no.value.data == {"reason": "email-unverified"}, verified
    firsts = [signin.user_of(vouched(sub, "carol@example.com")) for sub in ("c1", "c2")]
    got = await asyncio.gather(*firsts, return_exceptions=True)
    (bound,) = [g for g in got if isinstance(g, User)]
    (refused,) = [g for g in got if isinstance(g, IdTokenRejected)]
    assert (bound.id, refused.data) == (carol["id"], {"reason": "account-bound"})
    assert bound.subject is not None
    again = await signin.user_of(vouched(bound.subject.split()[1], "carol@example.com"))
    assert (again.id, again.role) == (carol["id"], "admin")
    stored = await find_user(world.store, "carol@example.com")
    assert stored.subject == bound.subject
