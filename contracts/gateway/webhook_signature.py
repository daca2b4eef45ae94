"""A webhook's wire format, as the Standard Webhooks specification has it (www.standardwebhooks.com,
the scheme Svix, OpenAI and others send): the body and its three headers.

- the body: ``{"type": "machine.<kind>", "timestamp": <the event's occurredAt>, "data": <the
  event as GET /events sends it>}``, byte for byte what is signed;
- ``webhook-id``: the event's id, the same on every attempt (the receiver's dedup key);
- ``webhook-timestamp``: the attempt's time, integer seconds since the epoch;
- ``webhook-signature``: ``v1,<base64 of HMAC-SHA256(key, id.timestamp.body)>``, one per key
  that signs, separated by spaces (after a rotation the old key signs beside the new one).

A secret is shown as ``whsec_`` + the base64 of its key: 32 random bytes (the specification
asks for 24 to 64).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from typing import Final

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the format's prefix, no secret
SECRET_BYTES: Final = 32
HEADER_ID: Final = "webhook-id"
HEADER_TIMESTAMP: Final = "webhook-timestamp"
HEADER_SIGNATURE: Final = "webhook-signature"
#: The signature scheme's identifier: symmetric HMAC-SHA256.
VERSION: Final = "v1"


def new_secret() -> str:
    """A new endpoint secret, as it is shown once: ``whsec_<base64>``."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The key of a ``whsec_`` secret; ValueError if it is none."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is whsec_ and base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("a webhook secret's key is 24 to 64 bytes")
    return key


def signature(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "<msg_id>.<timestamp>.<body>">``."""
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return f"{VERSION},{base64.b64encode(mac).decode()}"


def headers(keys: list[bytes], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers of one attempt, signed by each of ``keys`` (the newest first)."""
    if "." in msg_id:  # the id is part of what is signed, before the first dot
        raise ValueError("a webhook id has no dot")
    return {
        HEADER_ID: msg_id,
        HEADER_TIMESTAMP: str(timestamp),
        HEADER_SIGNATURE: " ".join(signature(k, msg_id, timestamp, body) for k in keys),
    }


def body(type_: str, timestamp: str, data: bytes) -> bytes:
    """The body of a webhook: ``data`` (JSON, as stored) inside the specification's envelope,
    with no re-encoding, so the receiver gets the event's bytes as ``/events`` sends them."""
    return b'{"type":"%s","timestamp":"%s","data":%s}' % (type_.encode(), timestamp.encode(), data)
