"""Webhooks: machine events POSTed to an endpoint that keeps no connection open
(``webhooks.create``, ``list``, ``delete``, ``rotateSecret``, ``test``, ``deliveries``).

An endpoint belongs to an instance (its owner manages it; it gets that instance's machines'
events) or, with no ``instanceId``, to the platform (its admins; every machine's events). It
names the event types it wants (``machine.created``, ...) or ``*``. Each event is sent as the
Standard Webhooks specification says (``contracts/gateway/webhook_signature.py``), at least once, in
order per machine, retried for a day (docs/webhooks.md).

The URL's syntax is checked here; where it may point (no loopback, link-local, private or
platform address) is checked on the platform, at creation and again at every delivery
(``controlplane/policy/webhook_rules.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal
from urllib.parse import SplitResult, urlsplit

import msgspec

from contracts.bus.subjects import EventKind
from contracts.credentials import credential
from contracts.errors import Forbidden, InvalidParams, NotFound, RateLimited
from contracts.gateway.types import InstanceId
from contracts.ids import ID_LENGTH, WEBHOOK_ID_RE
from contracts.rpc.jsonrpc import AnySpec, MethodSpec, Params, Result

#: Endpoints per instance (and on the platform).
MAX_WEBHOOKS: Final = 20
MAX_URL: Final = 2048
MAX_DESCRIPTION: Final = 256
#: Attempts ``webhooks.deliveries`` keeps per endpoint (the newest).
MAX_ATTEMPTS_KEPT: Final = 200
#: The type of every machine event: ``machine.<kind>``.
MACHINE_TYPE_PREFIX: Final = "machine."
EVENT_TYPES: Final = tuple(MACHINE_TYPE_PREFIX + k.value for k in EventKind)
#: What ``webhooks.test`` sends (to the one endpoint, whatever types it names).
TEST_TYPE: Final = "webhook.test"
ALL_TYPES: Final = "*"
#: An attempt's outcome: ``delivered`` (a 2xx in time), ``retrying`` (failed, another attempt
#: follows at ``nextAttemptAt``), ``failed`` (failed, and the last: the day is over, the
#: endpoint answered 410 or was disabled).
Outcome = Literal["delivered", "retrying", "failed"]

WebhookId = Annotated[
    str, msgspec.Meta(pattern=WEBHOOK_ID_RE.pattern, min_length=ID_LENGTH, max_length=ID_LENGTH)
]
EventType = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


def parse_url(url: str) -> SplitResult:
    """``url`` split, if it is one a webhook may be sent to; else ValueError saying why."""
    if any(c.isspace() or ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise ValueError("a URL has no spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise ValueError("a webhook URL is https:// (or http://)")
    if not parts.hostname:
        raise ValueError("a webhook URL names a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("a webhook URL holds no user or password: the signature authenticates")
    if parts.fragment or url.endswith("#"):
        raise ValueError("a webhook URL has no fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        raise ValueError("a webhook URL's port is 1 to 65535") from None
    if parts.port == 0:
        raise ValueError("a webhook URL's port is 1 to 65535")
    return parts


def target_of(parts: SplitResult) -> str:
    """The request target (origin form) of a parsed URL."""
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def check_types(types: list[str]) -> None:
    """ValueError unless ``types`` is ``["*"]`` or machine event types, each once."""
    if ALL_TYPES in types and len(types) > 1:
        raise ValueError("`*` stands alone: every type, those added later included")
    for t in types:
        if t != ALL_TYPES and t not in EVENT_TYPES:
            raise ValueError(f"{t!r} is no event type (they are machine.<kind>: "
                             f"{', '.join(EVENT_TYPES[:3])}, ...; or *)")  # fmt: skip
    if len(set(types)) != len(types):
        raise ValueError("each event type once")


def wants(types: list[str], type_: str) -> bool:
    """Whether an endpoint of ``types`` is sent events of ``type_``."""
    return ALL_TYPES in types or type_ in types


class CreateWebhookParams(Params, kw_only=True):
    #: None: a platform endpoint (every machine's events; a platform admin's).
    instance_id: InstanceId | None = None
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URL)]
    events: Annotated[list[EventType], msgspec.Meta(min_length=1, max_length=len(EVENT_TYPES))]
    description: Annotated[str, msgspec.Meta(max_length=MAX_DESCRIPTION)] = ""

    def __post_init__(self) -> None:
        try:
            parse_url(self.url)
        except ValueError as exc:
            raise ValueError(f"field `url`: {exc}") from None
        try:
            check_types(self.events)
        except ValueError as exc:
            raise ValueError(f"field `events`: {exc}") from None


class Webhook(Result, kw_only=True):
    """An endpoint, as anyone who manages it sees it: never its secret."""

    id: str
    #: None: the platform's.
    instance_id: str | None
    url: str
    events: list[str]
    description: str
    created_at: datetime
    #: Disabled endpoints are sent nothing (``disabledReason`` says why: 410 Gone, or every
    #: attempt failed for ``FLEET_WEBHOOK_DISABLE_AFTER_S``).
    disabled: bool = False
    disabled_reason: str | None = None
    #: Since when every attempt failed (None: the last one succeeded, or none was made).
    failing_since: datetime | None = None
    #: Until when the secret before the last rotation signs too (None: no rotation under way).
    previous_secret_until: datetime | None = None


class CreatedWebhook(Webhook, kw_only=True):
    #: The signing secret, shown this once.
    secret: Annotated[str, credential()]


class WebhookListParams(Params, kw_only=True):
    #: None: the platform's endpoints.
    instance_id: InstanceId | None = None


class WebhookList(Result, kw_only=True):
    webhooks: list[Webhook]


class WebhookRef(Params, kw_only=True):
    webhook_id: WebhookId


class WebhookDeleted(Result, kw_only=True):
    deleted: bool


class RotatedSecret(Result, kw_only=True):
    webhook_id: str
    #: The new secret, shown this once; it signs from now on.
    secret: Annotated[str, credential()]
    #: The secret it replaces signs beside it until then (24 h).
    previous_secret_until: datetime


class WebhookTestSent(Result, kw_only=True):
    #: The test event's id: its ``webhook-id``, and its attempts in ``webhooks.deliveries``.
    event_id: str


class DeliveriesParams(Params, kw_only=True):
    webhook_id: WebhookId
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_ATTEMPTS_KEPT)] = 50


class DeliveryAttempt(Result, kw_only=True):
    """One attempt to deliver one event."""

    event_id: str
    type: str
    #: None: no machine's (``webhook.test``).
    machine_id: str | None
    #: 1 for the first attempt of this event.
    attempt: int
    at: datetime
    #: The HTTP status answered (None: no answer: refused, unreachable, timed out).
    status: int | None
    duration_ms: float
    error: str | None
    outcome: Outcome
    #: When the next attempt is due (``retrying`` only).
    next_attempt_at: datetime | None = None


class Deliveries(Result, kw_only=True):
    webhook_id: str
    #: The newest first.
    attempts: list[DeliveryAttempt]
    #: Events waiting to be delivered (their first attempt, or the next).
    pending: int
    #: Events dropped unsent: past the endpoint's bound (``FLEET_WEBHOOK_QUEUE_MAX_EVENTS``,
    #: ``FLEET_WEBHOOK_QUEUE_MAX_BYTES``), the oldest of its largest queue.
    dropped: int = 0


_NF = (NotFound, Forbidden)
WEBHOOKS_CREATE: Final = MethodSpec(
    "webhooks.create", CreateWebhookParams, CreatedWebhook,
    "Add an endpoint that machine events are POSTed to (Standard Webhooks); its signing "
    "secret is answered this once.",
    (*_NF, InvalidParams), scope="admin",
)  # fmt: skip
WEBHOOKS_LIST: Final = MethodSpec(
    "webhooks.list", WebhookListParams, WebhookList,
    "An instance's webhook endpoints (or the platform's): never their secrets.", _NF,
    scope="admin", reads=True,
)  # fmt: skip
WEBHOOKS_DELETE: Final = MethodSpec(
    "webhooks.delete", WebhookRef, WebhookDeleted,
    "Delete a webhook endpoint: nothing more is sent to it, its queue included.", _NF,
    scope="admin",
)  # fmt: skip
WEBHOOKS_ROTATE_SECRET: Final = MethodSpec(
    "webhooks.rotateSecret", WebhookRef, RotatedSecret,
    "A new signing secret for an endpoint, answered this once; the old one signs beside it "
    "for 24 hours.", _NF, scope="admin",
)  # fmt: skip
WEBHOOKS_TEST: Final = MethodSpec(
    "webhooks.test", WebhookRef, WebhookTestSent,
    "Send a webhook.test event to an endpoint (its attempts show in webhooks.deliveries).",
    (*_NF, RateLimited), scope="admin", budget="webhook_test",
)  # fmt: skip
WEBHOOKS_DELIVERIES: Final = MethodSpec(
    "webhooks.deliveries", DeliveriesParams, Deliveries,
    "An endpoint's last delivery attempts (status, duration, error, next attempt) and how many "
    "events wait.", _NF, scope="admin", reads=True,
)  # fmt: skip

WEBHOOK_METHODS: tuple[AnySpec, ...] = (
    WEBHOOKS_CREATE, WEBHOOKS_LIST, WEBHOOKS_DELETE, WEBHOOKS_ROTATE_SECRET, WEBHOOKS_TEST,
    WEBHOOKS_DELIVERIES,
)  # fmt: skip
