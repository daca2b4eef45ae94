"""Identifier formats. IDs are safe as NATS subject tokens, NATS user names and file names."""

from __future__ import annotations

import re
import secrets
import uuid

MACHINE_ID_RE = re.compile(r"^m-[0-9a-f]{16}$")
INSTANCE_ID_RE = re.compile(r"^i-[0-9a-f]{16}$")
SNAPSHOT_ID_RE = re.compile(r"^s-[0-9a-f]{16}$")
USER_ID_RE = re.compile(r"^u-[0-9a-f]{16}$")
#: Exact length, so a pattern's `$` cannot let a trailing newline through.
ID_LENGTH = 18

# A fixed namespace so derived event ids are the same in every process.
_EVENT_NS = uuid.UUID("6f1c1a52-3f63-4b3e-9d0a-0c7f8f5b7a11")


def new_machine_id() -> str:
    return "m-" + secrets.token_hex(8)


def new_instance_id() -> str:
    return "i-" + secrets.token_hex(8)


def new_snapshot_id() -> str:
    return "s-" + secrets.token_hex(8)


def new_token_id() -> str:
    return "t-" + secrets.token_hex(8)


def new_user_id() -> str:
    return "u-" + secrets.token_hex(8)


def new_event_id() -> str:
    return uuid.uuid4().hex


def derived_event_id(cause_event_id: str, kind: str) -> str:
    """The id of the event a handler publishes in reaction to ``cause_event_id``.

    Deterministic, so a redelivered cause makes a handler publish an event with the same id,
    which JetStream's duplicate window (``Nats-Msg-Id``) then drops.
    """
    return uuid.uuid5(_EVENT_NS, f"{cause_event_id}/{kind}").hex
