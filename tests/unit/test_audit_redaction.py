"""The audit log's redaction table, its method table and its subjects, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from contracts.gateway import audit as a
from contracts.gateway.rpc import GATEWAY_METHODS, READ_ONLY_METHODS
from fleet.cli.audit import parse_since
from services.gateway.auth import Caller
from services.gateway.auth.audit_log import actor_of

R = a.REDACTED

CASES: list[tuple[str, Any, Any]] = [
    ("an env value", {"name": "API_KEY", "value": "s3cret"}, {"name": "API_KEY", "value": R}),
    (
        "a repo's token",
        {"url": "https://h/r.git", "token": "ghp_x", "username": "u"},
        {"url": "https://h/r.git", "token": R, "username": "u"},
    ),
    ("a created token", {"id": "t-1", "token": "ft_abc"}, {"id": "t-1", "token": R}),
    (
        "env names kept, values not",
        {"command": ["ls"], "env": {"A": "1", "B": "2"}},
        {"command": ["ls"], "env": {"A": R, "B": R}},
    ),
    (
        "file contents by size",
        {"path": "a", "content": "xyz"},
        {"path": "a", "content": f"{R} (3)"},
    ),
    (
        "command output",
        {"exitCode": 0, "stdout": "pw", "stderr": ""},
        {"exitCode": 0, "stdout": f"{R} (2)", "stderr": f"{R} (0)"},
    ),
    (
        "nested: a bridge's authorization",
        {"openapi": {"name": "x", "authorization": "Bearer k", "specUrl": "https://u:p@h/s?k=1"}},
        {"openapi": {"name": "x", "authorization": R, "specUrl": f"https://{R}@h/s?{R}"}},
    ),
    (
        "a URL's credentials",
        {"url": "https://user:pw@git.example.com:8443/r.git"},
        {"url": f"https://{R}@git.example.com:8443/r.git"},
    ),
    ("a local path stays", {"url": "/srv/repo.git"}, {"url": "/srv/repo.git"}),
    (
        "a ticket",
        {"ticket": "abc", "url": "http://m-1-80.localhost:1/"},
        {"ticket": R, "url": "http://m-1-80.localhost:1/"},
    ),
    ("a password", {"password": "x"}, {"password": R}),
    ("null stays null", {"token": None}, {"token": None}),
    ("a long string is cut", {"name": "n" * 300}, {"name": "n" * a.MAX_STRING + "…"}),
]


@pytest.mark.parametrize(("why", "given", "kept"), CASES, ids=[c[0] for c in CASES])
def test_redaction_table(why: str, given: Any, kept: Any) -> None:
    assert a.redact(given) == kept


def test_long_lists_are_cut_and_counted() -> None:
    got = a.redact({"keys": list(range(a.MAX_ITEMS + 5))})
    assert got["keys"][: a.MAX_ITEMS] == list(range(a.MAX_ITEMS))
    assert got["keys"][-1] == "… 5 more"


def test_read_only_methods_are_methods_and_the_rest_is_audited() -> None:
    names = {s.name for s in GATEWAY_METHODS}
    assert names >= READ_ONLY_METHODS
    audited = names - READ_ONLY_METHODS
    assert {
        "env.set",
        "machines.exec",
        "tokens.create",
        "tokens.revoke",
        "sessions.open",
        "machines.previewTicket",
        "machines.writeFile",
        "machines.readFile",
    } <= audited
    assert "audit.list" in READ_ONLY_METHODS


def test_subjects_and_filters() -> None:
    assert a.audit_subject(None, None) == "audit.platform.none"
    assert a.audit_subject("i-1", "m-2") == "audit.i-1.m-2"
    assert a.audit_subject("a.b>", None) == "audit.a_b_.none"
    assert a.audit_filter(None, "m-2") == "audit.*.m-2"
    assert a.audit_filter("i-1", None) == "audit.i-1.*"


def test_actor_of() -> None:
    assert actor_of(Caller(token_id="admin")) == "admin"
    assert actor_of(Caller(token_id="t-1", admin=False, instance_id="i-1")) == "t-1"
    assert actor_of(None) == "anonymous"
    # A user's call names the user, whichever credential (token or sign-in session) it used.
    assert actor_of(Caller(token_id="ws-1", admin=False, user_id="u-1")) == "u-1"


def test_since_takes_an_age_or_a_time() -> None:
    now = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
    assert parse_since("30m", now) == datetime(2026, 1, 2, 11, 30, tzinfo=UTC)
    assert parse_since("2d", now) == datetime(2025, 12, 31, 12, 0, tzinfo=UTC)
    assert parse_since("2026-01-01T00:00:00") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_since(None) is None
