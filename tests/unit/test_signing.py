"""Request signing and the replay guard (pure)."""

from __future__ import annotations

import time

import pytest

from contracts.daemon.signing import (
    H_ID,
    H_REPLY_SIG,
    H_SIG,
    ReplayGuard,
    sign,
    sign_reply,
    signing_key,
    verify,
    verify_reply,
)
from contracts.errors import ReplyForged, RequestExpired, RequestReplayed, Unauthorized

KEY = signing_key("token")


def test_a_signed_request_verifies_once() -> None:
    guard = ReplayGuard()
    headers = sign(KEY, "m-1", b"body")
    verify(KEY, "m-1", b"body", headers, guard)
    with pytest.raises(RequestReplayed):
        verify(KEY, "m-1", b"body", headers, guard)


@pytest.mark.parametrize(("machine", "body"), [("m-2", b"body"), ("m-1", b"other")])
def test_signature_binds_machine_and_body(machine: str, body: bytes) -> None:
    with pytest.raises(Unauthorized):
        verify(KEY, machine, body, sign(KEY, "m-1", b"body"), ReplayGuard())


def test_expired_and_future_requests() -> None:
    now = time.time()
    for issued, ttl in ((now - 100, 30.0), (now + 300, 30.0), (now, 1e9)):
        headers = sign(KEY, "m-1", b"b", issued_at=issued, ttl_s=ttl)
        with pytest.raises(RequestExpired):
            verify(KEY, "m-1", b"b", headers, ReplayGuard(), now=now)


def test_guard_forgets_ids_once_they_could_not_pass_anyway() -> None:
    guard = ReplayGuard()
    for n in range(10_000):
        guard.check_and_remember(f"id-{n}", forget_at=n + 30.0, now=float(n))
    assert len(guard) <= 31  # only the last TTL's worth is kept
    with pytest.raises(RequestReplayed):
        guard.check_and_remember("id-9999", forget_at=1e9, now=9999.5)


def test_missing_headers_are_unauthorized() -> None:
    headers = sign(KEY, "m-1", b"b")
    del headers[H_ID]
    with pytest.raises(Unauthorized):
        verify(KEY, "m-1", b"b", headers, ReplayGuard())


def test_a_request_issued_before_the_guard_started_is_refused() -> None:
    now = time.time()
    guard = ReplayGuard(started_at=now, skew_s=2.0)
    verify(KEY, "m-1", b"b", sign(KEY, "m-1", b"b", issued_at=now - 1.5), guard, now=now)
    with pytest.raises(RequestExpired, match="before this daemon started"):
        verify(KEY, "m-1", b"b", sign(KEY, "m-1", b"b", issued_at=now - 2.5), guard, now=now)


def test_a_reply_verifies_only_for_its_machine_request_and_body() -> None:
    headers = sign_reply(KEY, "m-1", "rid", b"answer")
    verify_reply(KEY, "m-1", "rid", b"answer", headers)
    wrong = [
        ("m-2", "rid", b"answer", KEY),
        ("m-1", "other", b"answer", KEY),
        ("m-1", "rid", b"forged", KEY),
        ("m-1", "rid", b"answer", signing_key("guess")),
    ]
    for machine, rid, body, key in wrong:
        with pytest.raises(ReplyForged):
            verify_reply(key, machine, rid, body, headers)
    with pytest.raises(ReplyForged):
        verify_reply(KEY, "m-1", "rid", b"answer", None)


def test_a_request_mac_never_passes_for_a_reply_mac() -> None:
    req = sign(KEY, "m-1", b"x", request_id="rid")
    with pytest.raises(ReplyForged):
        verify_reply(KEY, "m-1", "rid", b"x", {H_REPLY_SIG: req[H_SIG]})
