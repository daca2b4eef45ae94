"""The scope table and ``Caller``'s decisions, as pure functions."""

from __future__ import annotations

import pytest

from contracts.gateway.rpc import GATEWAY_METHODS, METHOD_SCOPES, method_scopes
from contracts.people import (
    ALL_SCOPES,
    FILES_READ,
    FILES_WRITE,
    MACHINES_EXEC,
    MACHINES_READ,
    PORTS,
    route_scope,
)
from contracts.rpc.jsonrpc import MethodSpec, NoParams
from services.gateway.auth import Caller


def test_every_gateway_method_has_exactly_one_scope() -> None:
    assert set(METHOD_SCOPES) == {m.name for m in GATEWAY_METHODS}
    assert set(METHOD_SCOPES.values()) <= ALL_SCOPES


def test_a_gateway_method_without_a_scope_is_refused_at_import_by_name() -> None:
    unscoped = MethodSpec("machines.echo", NoParams, NoParams, "Echo.")
    scoped = MethodSpec("machines.echo2", NoParams, NoParams, "Echo.", scope="machines:read")
    with pytest.raises(TypeError, match=r"\['machines.echo'\]"):
        method_scopes((scoped, unscoped))
    assert method_scopes((scoped,)) == {"machines.echo2": "machines:read"}


def test_http_routes_into_a_machine_need_their_scope() -> None:
    m = "/machines/m-0123456789abcdef"
    assert route_scope("GET", f"{m}/files/a/b") == FILES_READ
    assert route_scope("PUT", f"{m}/files/a/b") == FILES_WRITE
    assert route_scope("GET", f"{m}/sessions/s-1/attach") == MACHINES_EXEC
    assert route_scope("GET", f"{m}/tunnel/3000") == PORTS
    assert route_scope("GET", "/events") == MACHINES_READ
    assert route_scope("POST", "/codemode/run") == MACHINES_EXEC
    assert route_scope("POST", "/rpc") is None


def user(role: str, roles: dict[str, str], **token: object) -> Caller:
    return Caller("s-x", admin=role == "admin", user_id="u-1", role=role, roles=roles, **token)  # type: ignore[arg-type]


def test_roles_and_tokens_decide_together() -> None:
    viewer = user("member", {"i-a": "viewer"})
    assert viewer.held("i-a") == {MACHINES_READ}
    assert viewer.held("i-b") == frozenset()
    assert viewer.held(None) == {MACHINES_EXEC}  # a member may make instances
    auditor = user("auditor", {})
    assert auditor.held("i-z") == {MACHINES_READ}
    assert not auditor.may(None, FILES_READ)
    dev_token = user("member", {"i-a": "developer"}, scopes=frozenset({MACHINES_EXEC}),
                     instance_ids=frozenset({"i-a"}))  # fmt: skip
    assert dev_token.held("i-a") == {MACHINES_EXEC}
    assert dev_token.held("i-b") == frozenset()
    demoted = user("member", {"i-a": "viewer"}, scopes=frozenset({MACHINES_EXEC}))
    assert demoted.held("i-a") == frozenset()  # a token never exceeds its user's role
    legacy = Caller("t-1", admin=False, instance_id="i-a")
    assert legacy.held("i-a") == ALL_SCOPES
    assert legacy.held("i-b") == frozenset()
    assert not Caller("t-2", admin=False).may("i-a", MACHINES_READ)
    assert Caller("admin").held(None) == ALL_SCOPES
