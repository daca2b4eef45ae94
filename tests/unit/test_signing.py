"""Request signing and the replay guard (pure)."""

from __future__ import annotations

import time

import pytest

from contracts.errors import RequestExpired, RequestReplayed, Unauthorized
from contracts.signing import H_ID, ReplayGuard, sign, signing_key, verify

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
