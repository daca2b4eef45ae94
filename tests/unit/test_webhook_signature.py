"""A webhook's wire format (contracts/gateway/webhook_signature.py) against the Standard Webhooks
reference library (PyPI ``standardwebhooks``): what fleetd signs, it verifies; what it signs
itself, fleetd signs the same; a tampered body, id or timestamp, or the wrong secret, fails."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from contracts.gateway import webhook_signature as sig

DATA = (
    b'{"type":"created","eventId":"d77f6b666cf747b68d4dafe911b842b1",'
    b'"machineId":"m-01b63eb8adbe507d"}'
)


def test_a_secret_is_whsec_and_the_base64_of_32_random_bytes() -> None:
    secret = sig.new_secret()
    assert secret.startswith("whsec_")
    assert len(sig.secret_key(secret)) == 32
    assert sig.new_secret() != secret
    for bad in ("d2hhdA==", "whsec_!!!", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError, match=r"whsec_|24 to 64"):
            sig.secret_key(bad)


def test_the_body_is_the_specifications_envelope_around_the_event_as_stored() -> None:
    body = sig.body("machine.created", "2026-11-21T04:45:37.270172Z", DATA)
    assert body == (b'{"type":"machine.created","timestamp":"2026-11-21T04:45:37.270172Z","data":'
                    + DATA + b"}")  # fmt: skip


def test_the_reference_verifier_accepts_what_fleetd_signs() -> None:
    secret = sig.new_secret()
    body = sig.body("machine.created", "2026-11-21T04:45:37.270172Z", DATA)
    now = int(time.time())
    headers = sig.headers([sig.secret_key(secret)], "d77f6b666cf747b68d4dafe911b842b1", now, body)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(secret).verify(body, headers)["data"]["machineId"] == "m-01b63eb8adbe507d"
    # ... and signs the same itself.
    reference = Webhook(secret).sign("d77f6b666cf747b68d4dafe911b842b1",
                                     datetime.fromtimestamp(now, UTC), body.decode())  # fmt: skip
    assert reference == headers["webhook-signature"]


@pytest.mark.parametrize("tamper", ["body", "id", "timestamp", "secret"])
def test_the_reference_verifier_refuses_anything_changed(tamper: str) -> None:
    secret, other = sig.new_secret(), sig.new_secret()
    body = sig.body("machine.ready", "2026-11-21T04:45:37Z", DATA)
    headers = sig.headers([sig.secret_key(secret)], "abc123", int(time.time()), body)
    if tamper == "body":
        body = body.replace(b"m-01b63eb8adbe507d", b"m-01b63eb8adbe5070")
    elif tamper == "id":
        headers["webhook-id"] = "abc124"
    elif tamper == "timestamp":
        headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) + 1)
    else:
        secret = other
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, headers)


def test_after_a_rotation_both_secrets_verify() -> None:
    old, new = sig.new_secret(), sig.new_secret()
    body = sig.body("machine.ready", "2026-11-21T04:45:37Z", DATA)
    headers = sig.headers([sig.secret_key(new), sig.secret_key(old)], "abc", int(time.time()),
                          body)  # fmt: skip
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert Webhook(new).verify(body, headers)
    assert Webhook(old).verify(body, headers)


def test_an_id_with_a_dot_is_never_signed() -> None:
    with pytest.raises(ValueError, match="no dot"):  # it would move what is signed
        sig.headers([sig.secret_key(sig.new_secret())], "a.b", 1, b"{}")
