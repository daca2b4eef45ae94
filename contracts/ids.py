"""Identifier formats. IDs are safe as NATS subject tokens, NATS user names and file names."""

from __future__ import annotations

import functools
import re

TYPE_CHECKING = False  # typing's, without importing typing
if TYPE_CHECKING:
    import uuid

MACHINE_ID_RE = re.compile(r"^m-[0-9a-f]{16}$")
INSTANCE_ID_RE = re.compile(r"^i-[0-9a-f]{16}$")
SNAPSHOT_ID_RE = re.compile(r"^s-[0-9a-f]{16}$")
USER_ID_RE = re.compile(r"^u-[0-9a-f]{16}$")
WEBHOOK_ID_RE = re.compile(r"^w-[0-9a-f]{16}$")
#: Exact length, so a pattern's `$` cannot let a trailing newline through.
ID_LENGTH = 18

#: What each id's prefix names, for the messages that say what an id looks like.
ID_KINDS = {"m": "machine", "i": "instance", "s": "snapshot", "u": "user", "t": "token",
            "w": "webhook"}  # fmt: skip
#: Each kind's id pattern by the API's field names for it (in a JSON path, a list's items too).
ID_FIELDS = {
    "machineId": "m", "instanceId": "i", "instanceIds": "i", "snapshotId": "s",
    "fromSnapshot": "s", "webhookId": "w",
}  # fmt: skip


def id_shape(prefix: str) -> str:
    """What an id of this kind looks like: ``m-0123456789abcdef``."""
    return f"{prefix}-0123456789abcdef"


def not_an_id(what: str, prefix: str) -> str:
    """The one message for a string that is not an id of this kind (the CLI's, the API's)."""
    return f"{what} is not {_a(ID_KINDS[prefix])} id (they look like {id_shape(prefix)})"


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


# A fixed namespace so derived event ids are the same in every process.
_EVENT_NS = "6f1c1a52-3f63-4b3e-9d0a-0c7f8f5b7a11"


def new_machine_id() -> str:
    return "m-" + _hex8()


def new_instance_id() -> str:
    return "i-" + _hex8()


def new_snapshot_id() -> str:
    return "s-" + _hex8()


def new_token_id() -> str:
    return "t-" + _hex8()


def new_user_id() -> str:
    return "u-" + _hex8()


def new_webhook_id() -> str:
    return "w-" + _hex8()


def _hex8() -> str:
    # secrets and uuid are imported where an id is made: `fleet machines list` and `exec`
    # check ids' shapes on a start that pays for every import (bench 30).
    import secrets

    return secrets.token_hex(8)


def new_event_id() -> str:
    import uuid

    return uuid.uuid4().hex


def derived_event_id(cause_event_id: str, kind: str) -> str:
    """The id of the event a handler publishes in reaction to ``cause_event_id``.

    Deterministic, so a redelivered cause makes a handler publish an event with the same id,
    which JetStream's duplicate window (``Nats-Msg-Id``) then drops.
    """
    import uuid

    return uuid.uuid5(_event_namespace(), f"{cause_event_id}/{kind}").hex


@functools.cache
def _event_namespace() -> uuid.UUID:
    # Made once: derived_event_id runs for every event a handler publishes.
    import uuid

    return uuid.UUID(_EVENT_NS)
