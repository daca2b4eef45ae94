"""The rights table walked whole: every gateway method, called by each instance role, each
platform role and a token of each scope, is allowed or refused exactly as ``contracts/people.py``
says (``METHOD_SCOPES``, ``INSTANCE_ROLE_SCOPES``, ``PLATFORM_ROLE_SCOPES``), through the
dispatcher that ``POST /rpc``, codemode's tool calls and the streams' methods share. A refusal
names the table's scope. A method with no sample call here, or none in the table, fails the walk.
(``tests/integration/test_rights_routes.py`` checks that the HTTP, WebSocket and MCP routes take
the same check.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from contracts.errors import FleetError, Forbidden, InvalidParams
from contracts.gateway.codemode import RunRecord, now
from contracts.gateway.rpc import GATEWAY_METHODS, METHOD_SCOPES
from contracts.people import (
    ADMIN,
    ALL_SCOPES,
    INSTANCE_ROLE_SCOPES,
    INSTANCE_ROLES,
    PLATFORM_ROLE_SCOPES,
    PLATFORM_ROLES,
    READ_ONLY,
)
from services.gateway.auth import Caller
from tests.fast.conftest import World

NOTHING: frozenset[str] = frozenset()
RUN_ID = "run-00000000000000aa"
EMAIL = "someone@example.com"
SESSION = "0123456789abcdef"
ENVIRONMENT = {"image": "debian:12"}


@dataclass(frozen=True)
class Who:
    """A caller, and what the table says it holds on the walk's instance and on the platform."""

    name: str
    caller: Caller
    on_instance: frozenset[str]
    on_platform: frozenset[str]

    def holds(self, on_instance: bool | None) -> frozenset[str]:
        """On the instance, on the platform, or (None) on the caller's own: its one instance
        when it is bound to one, else the platform."""
        if on_instance is None:
            on_instance = self.caller.instance_id is not None
        return self.on_instance if on_instance else self.on_platform


def everyone(instance_id: str) -> list[Who]:
    """Each instance role (its user a platform member), each platform role with no instance
    role, an owner's token of each scope bound to the instance, and an admin's token of each
    scope bound to none (the platform's methods)."""
    member = PLATFORM_ROLE_SCOPES["member"]
    out = [Who(f"{role} of the instance",
               Caller(f"s-{role}", admin=False, user_id=f"u-{role}", role="member",
                      roles={instance_id: role}),
               INSTANCE_ROLE_SCOPES[role], member) for role in INSTANCE_ROLES]  # fmt: skip
    for role in PLATFORM_ROLES:
        held = ALL_SCOPES if role == "admin" else PLATFORM_ROLE_SCOPES[role]
        on_any = held if role != "member" else NOTHING  # an auditor looks at every instance
        assert role != "auditor" or held == READ_ONLY
        out.append(Who(f"platform {role}", Caller(f"s-p-{role}", admin=role == "admin",
                                                  user_id=f"u-p-{role}", role=role),
                       on_any, held))  # fmt: skip
    for scope in sorted(ALL_SCOPES):
        owners = Caller(f"t-owner-{scope}", admin=False, user_id="u-owner", role="member",
                        roles={instance_id: "owner"}, scopes=frozenset({scope}),
                        instance_id=instance_id, instance_ids=frozenset({instance_id}))  # fmt: skip
        out.append(Who(f"owner's {scope} token", owners,
                       INSTANCE_ROLE_SCOPES["owner"] & {scope}, NOTHING))  # fmt: skip
        admins = Caller(f"t-admin-{scope}", admin=False, user_id="u-admin", role="admin",
                        scopes=frozenset({scope}))  # fmt: skip
        out.append(Who(f"admin's {scope} token", admins, frozenset({scope}), frozenset({scope})))
    return out


@dataclass(frozen=True)
class Sample:
    """A call of a method, and where it acts: on the walk's instance, on the platform, or
    (None) on the caller's own, as a call that names neither does."""

    params: dict[str, Any]
    on_instance: bool | None = True


def samples(i: str, m: str, snapshot: str, token: str, webhook: str) -> dict[str, Sample]:
    """One call of every gateway method, on instance ``i`` (machine ``m``, its ``snapshot``,
    the admin's ``token`` for it, its ``webhook``) or on the platform."""
    im, mm, p = {"instanceId": i}, {"machineId": m}, False
    wm = {"webhookId": webhook}
    cmd = {**mm, "command": ["true"]}
    return {
        "instances.create": Sample({"name": "walked"}, p), "instances.get": Sample(im),
        "instances.list": Sample({}, p),
        "env.set": Sample({**im, "name": "A", "value": "1"}),
        "env.unset": Sample({**im, "name": "A"}), "env.list": Sample(im),
        "repos.add": Sample({**im, "url": "https://git.example/x.git", "branch": "main",
                             "path": "x"}),
        "repos.remove": Sample({**im, "path": "x"}), "repos.list": Sample(im),
        "machines.create": Sample(im), "machines.get": Sample(mm), "machines.list": Sample(im),
        "machines.archive": Sample(mm), "machines.rebuild": Sample(im),
        "machines.exec": Sample(cmd), "machines.execStream": Sample(cmd),
        "machines.writeFile": Sample({**mm, "path": "a", "content": "x"}),
        "machines.refreshEnv": Sample(im), "machines.refreshCode": Sample(mm),
        "machines.process.start": Sample(cmd), "machines.process.list": Sample(mm),
        "machines.process.kill": Sample({**mm, "pid": 1}),
        "machines.process.logs": Sample({**mm, "pid": 1}),
        "cron.set": Sample({**im, "jobs": []}), "cron.list": Sample(im),
        "tokens.create": Sample({"name": "walked", "instanceIds": [i],
                                 "scopes": ["machines:read"]}),
        "tokens.list": Sample({}, p), "tokens.revoke": Sample({"id": token}),  # a token of i
        "rpc.discover": Sample({}, p), "events.ticket": Sample({}, p),
        "machines.daemonLog": Sample(mm), "machines.restart": Sample(mm),
        "machines.ports": Sample(mm), "machines.previewTicket": Sample({**mm, "port": 3000}),
        "instances.setSshKeys": Sample({**im, "keys": []}),
        "instances.setLimits": Sample({**im, "pids": 100}), "instances.getLimits": Sample(im),
        "instances.setNetworkPolicy": Sample({**im, "egress": {"default": "allow"}}),
        "instances.getNetworkPolicy": Sample(im),
        "hosts.list": Sample({}, p), "hosts.drain": Sample({"hostId": "vm"}, p),
        "machines.stop": Sample(mm), "machines.start": Sample(mm),
        "machines.pause": Sample(mm), "machines.resume": Sample(mm),
        "instances.setAutoStop": Sample({**im, "idleAfterS": 3600}),
        "instances.getAutoStop": Sample(im),
        "instances.setRuntime": Sample({**im, "runtime": "namespaces"}),
        "instances.getRuntime": Sample(im),
        "machines.fork": Sample(mm), "machines.snapshot": Sample({**mm, "name": "walked"}),
        "snapshots.list": Sample(im), "snapshots.delete": Sample({"snapshotId": snapshot}),
        "codemode.run": Sample({"code": "1"}, None), "codemode.describe": Sample({}, None),
        "codemode.cancel": Sample({"runId": RUN_ID}), "codemode.list": Sample(im),
        "codemode.bridges.set": Sample({**im, "openapi": {
            "name": "api", "specUrl": "http://x/openapi.json", "baseUrl": "http://x"}}),
        "codemode.bridges.list": Sample(im),
        "codemode.bridges.remove": Sample({**im, "name": "api"}),
        "sessions.open": Sample({**mm, "command": ["sh"]}), "sessions.list": Sample(mm),
        "sessions.resize": Sample({**mm, "sessionId": SESSION, "cols": 80, "rows": 24}),
        "sessions.close": Sample({**mm, "sessionId": SESSION}),
        "sessions.signal": Sample({**mm, "sessionId": SESSION, "signal": 15}),
        "sessions.write": Sample({**mm, "sessionId": SESSION, "data": "aGk="}),
        "machines.readFile": Sample({**mm, "path": "a"}),
        "machines.listDir": Sample(mm), "machines.stat": Sample({**mm, "path": "a"}),
        "machines.removeFile": Sample({**mm, "path": "a"}),
        "machines.makeDir": Sample({**mm, "path": "a"}),
        "machines.move": Sample({**mm, "source": "a", "destination": "b"}),
        "machines.watch": Sample({**mm, "path": "a"}),
        "machines.metrics": Sample(mm),
        "instances.setEnvironment": Sample({**im, "environment": ENVIRONMENT}),
        "instances.getEnvironment": Sample(im),
        "environments.list": Sample({}, p), "environments.build": Sample(im),
        "environments.delete": Sample({"environmentId": "0" * 32}, p),
        "audit.list": Sample(im),
        "users.create": Sample({"email": "new@example.com"}, p), "users.list": Sample({}, p),
        "users.setRole": Sample({"user": EMAIL, "role": "member"}, p),
        "users.disable": Sample({"user": EMAIL}, p), "users.enable": Sample({"user": EMAIL}, p),
        "instances.setMember": Sample({**im, "user": EMAIL, "role": "viewer"}),
        "instances.members": Sample(im),
        "machines.code.run": Sample({**mm, "code": "1"}),
        "machines.code.createContext": Sample(mm), "machines.code.listContexts": Sample(mm),
        "machines.code.restartContext": Sample({**mm, "contextId": "c1"}),
        "machines.code.deleteContext": Sample({**mm, "contextId": "c1"}),
        "machines.code.interrupt": Sample({**mm, "contextId": "c1"}),
        "machines.desktop.start": Sample(mm), "machines.desktop.stop": Sample(mm),
        "machines.desktop.get": Sample(mm), "machines.desktop.screenshot": Sample(mm),
        "machines.desktop.act": Sample({**mm, "actions": [{"type": "wait", "ms": 0}]}),
        "machines.desktop.open": Sample({**mm, "url": "about:blank"}),
        "machines.desktop.view": Sample(mm),
        "secrets.set": Sample({**im, "name": "API_KEY", "value": "v",
                               "hosts": ["api.example.com"]}),
        "secrets.list": Sample(im), "secrets.delete": Sample({**im, "name": "API_KEY"}),
        "webhooks.create": Sample({**im, "url": "https://93.184.215.14/hook", "events": ["*"]}),
        "webhooks.list": Sample(im), "webhooks.delete": Sample(wm),
        "webhooks.rotateSecret": Sample(wm), "webhooks.test": Sample(wm),
        "webhooks.deliveries": Sample(wm),
    }  # fmt: skip


async def outcome(world: World, method: str, params: dict[str, Any],
                  caller: Caller) -> tuple[str | None, Any]:  # fmt: skip
    """The scope a refusal names (None: not refused for a right; any other error is the
    method's own), and the answer. A sample the method finds invalid proves nothing: that is
    named as a refusal of its own."""
    try:
        return None, await world.rpc(method, params, caller)
    except Forbidden as refused:
        data = refused.data or {}
        return str(data.get("scope", f"no scope named: {refused.message}")), None
    except InvalidParams as bad:
        return f"a bad sample: {bad.message}", None
    except FleetError:
        return None, None


#: Methods that name no record: they refuse nobody, and answer only what the caller holds the
#: table's scope for; the test of what this one's answer shows of the walk's instance (None:
#: it shows nothing of an instance: the caller's own tokens, a ticket to its own event stream,
#: the public OpenRPC document).
LISTS: dict[str, Callable[[Any, str], bool] | None] = {
    "instances.list": lambda answer, i: i in {x["id"] for x in answer["instances"]},
    "tokens.list": None,
    "events.ticket": None,
    "rpc.discover": None,
}
#: Rights decided by a rule of their own as well as (or, where said, instead of) the table's
#: scope: the rule, given the caller and whether the table allows it. Its refusal names no scope.
BEYOND: dict[str, Callable[[Who, bool], bool]] = {
    # services.gateway.auth.audit_log.may_read: admins and auditors only
    "audit.list": lambda who, table: table and (who.caller.admin or who.caller.role == "auditor"),
    # services.gateway.rpc.people.may_see, instead of the table: a token is its user's (the
    # walk's token is the operator's), and the business of who holds admin on its instances
    "tokens.revoke": lambda who, _: ADMIN in who.on_instance,
}


async def test_every_method_is_allowed_or_refused_as_the_table_says(world: World) -> None:
    m = await world.ready_machine()
    i = m.instance_id
    snapshot = (await world.rpc("machines.snapshot", {"machineId": m.id, "name": "s"}))["id"]
    token = (await world.rpc("tokens.create", {"name": "t", "instanceIds": [i]}))["id"]
    await world.rpc("users.create", {"email": EMAIL})
    await world.rpc("instances.setEnvironment", {"instanceId": i, "environment": ENVIRONMENT})
    await world.store.codemode.save_run(
        RunRecord(run_id=RUN_ID, status="running", instance_id=i, token_id="t-other",
                  started_at=now()))  # fmt: skip
    webhook = (
        await world.rpc(
            "webhooks.create",
            {"instanceId": i, "events": ["*"], "url": "https://93.184.215.14/hook"},
        )
    )["id"]
    calls = samples(i, m.id, snapshot, token, webhook)
    methods = {spec.name for spec in GATEWAY_METHODS}
    assert set(calls) == methods, "every gateway method needs a sample call here"
    assert set(METHOD_SCOPES) == methods, "every gateway method needs its scope in the table"
    wrong: list[str] = []
    for method in sorted(methods, key=_destructive_last):
        wrong += await walk(world, method, calls[method], i)
    assert not wrong, "\n".join(wrong)


async def walk(world: World, method: str, sample: Sample, i: str) -> list[str]:
    """What the walk of one method finds wrong: every caller, those refused first (an allowed
    call may end the record the others need, as an archive does)."""
    scope, wrong = METHOD_SCOPES[method], []
    beyond = BEYOND.get(method, _as_the_table_says)

    def allowed(who: Who) -> bool:
        return beyond(who, scope in who.holds(sample.on_instance))

    for who in sorted(everyone(i), key=allowed):
        refused, answer = await outcome(world, method, sample.params, who.caller)
        if method in LISTS:
            shows = LISTS[method]
            if refused is not None:
                wrong.append(f"{method}: {who.name} was refused ({refused})")
            elif shows is not None and shows(answer, i) != (scope in who.on_instance):
                wrong.append(f"{method}: {who.name} was shown the instance: {shows(answer, i)}")
        elif allowed(who) and refused is not None:
            wrong.append(f"{method}: {who.name} holds {scope} but was refused ({refused})")
        elif not allowed(who) and refused != scope and (method not in BEYOND or not refused):
            wrong.append(f"{method}: {who.name} lacks {scope} but got {refused or 'through'}")
    return wrong


def _as_the_table_says(_: Who, table: bool) -> bool:
    return table


#: Walked after every other method: they end what the others' calls need.
_DESTRUCTIVE = ("machines.archive", "machines.rebuild", "machines.stop", "snapshots.delete",
                "tokens.revoke", "users.disable", "webhooks.delete")  # fmt: skip


def _destructive_last(method: str) -> tuple[bool, str]:
    return method in _DESTRUCTIVE, method
