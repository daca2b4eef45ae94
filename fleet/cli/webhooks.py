"""`fleet webhooks create|list|delete|rotate-secret|test|deliveries`: endpoints that machine
events are POSTed to, signed as the Standard Webhooks specification says (docs/webhooks.md).

An instance's owner manages its endpoints (``--instance``); without it, the platform's (every
machine's events; a platform admin's). The signing secret is printed once, by ``create`` and
``rotate-secret``: keep it where the receiver verifies.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from fleet.cli.common import SubAction, command, emit
from fleet.cli.render import age, table

if TYPE_CHECKING:
    from fleet.client import FleetClient

Args = argparse.Namespace


def register(sub: SubAction) -> None:
    g = sub.add_parser(
        "webhooks",
        help="machine events POSTed to your endpoints (Standard Webhooks)",
        description="Endpoints that machine events are POSTed to, signed (webhook-id, "
        "webhook-timestamp, webhook-signature), at least once, in order per machine, retried "
        "for a day. An instance's owner manages its own (--instance); a platform admin the "
        "platform's, which get every machine's events.",
    ).add_subparsers(dest="sub", required=True, metavar="COMMAND")
    create = command(g, "create", _create, "add an endpoint; its secret is printed this once")
    create.add_argument("url", help="https:// (or http://) URL at a public address")
    create.add_argument("--event", action="append", dest="events", metavar="TYPE",
                        help="an event type it gets (machine.created, machine.ready, ...); "
                        "repeat it; default: every type (*)")  # fmt: skip
    create.add_argument("--description", default="", help="what it is for")
    listed = command(g, "list", _list, "the endpoints (never their secrets)")
    for p in (create, listed):
        p.add_argument("--instance", help="the instance's id (default: the platform's)")
    delete = command(g, "delete", _delete, "delete an endpoint and what waits for it")
    rotate = command(
        g,
        "rotate-secret",
        _rotate,
        "a new secret, printed this once; the old one signs beside it for 24 h",
    )
    test = command(g, "test", _test, "send a webhook.test event to the endpoint")
    deliveries = command(
        g,
        "deliveries",
        _deliveries,
        "the last delivery attempts: status, duration, error, next attempt",
    )
    deliveries.add_argument("--limit", type=int, default=50, help="at most this many (<= 200)")
    for p in (delete, rotate, test, deliveries):
        p.add_argument("webhook", metavar="WEBHOOK_ID")


async def _create(c: FleetClient, a: Args) -> int:
    h = await c.webhooks_create(a.url, a.events or ["*"], instance_id=a.instance,
                                description=a.description)  # fmt: skip
    return emit(
        a,
        h,
        lambda: (
            f"{h.id} -> {h.url} ({', '.join(h.events)})\n"
            f"secret: {h.secret}\n(shown once: keep it where the receiver verifies)"
        ),
    )


async def _list(c: FleetClient, a: Args) -> int:
    xs = (await c.webhooks_list(instance_id=a.instance)).webhooks
    rows = [[h.id, h.url, ",".join(h.events),
             f"disabled: {h.disabled_reason}" if h.disabled
             else f"failing for {age(h.failing_since)}" if h.failing_since else "ok",
             h.description] for h in xs]  # fmt: skip
    return emit(a, xs, lambda: table(rows, ["ID", "URL", "EVENTS", "STATE", "DESCRIPTION"]))


async def _delete(c: FleetClient, a: Args) -> int:
    deleted = (await c.webhooks_delete(a.webhook)).deleted
    return emit(a, {"deleted": deleted}, lambda: "deleted" if deleted else "no such webhook")


async def _rotate(c: FleetClient, a: Args) -> int:
    r = await c.webhooks_rotate_secret(a.webhook)
    return emit(
        a,
        r,
        lambda: (
            f"secret: {r.secret}\n(shown once; the previous one signs too "
            f"until {r.previous_secret_until.isoformat()})"
        ),
    )


async def _test(c: FleetClient, a: Args) -> int:
    sent = await c.webhooks_test(a.webhook)
    return emit(
        a,
        sent,
        lambda: f"queued webhook.test {sent.event_id}: see `fleet webhooks deliveries {a.webhook}`",
    )


async def _deliveries(c: FleetClient, a: Args) -> int:
    d = await c.webhooks_deliveries(a.webhook, limit=a.limit)
    rows = [[f"{age(x.at)} ago", x.type, x.machine_id or "-", str(x.attempt),
             str(x.status or "-"), f"{x.duration_ms:.0f}ms", x.outcome,
             x.next_attempt_at.isoformat(timespec="seconds") if x.next_attempt_at else "",
             x.error or ""] for x in d.attempts]  # fmt: skip
    head = ["WHEN", "TYPE", "MACHINE", "TRY", "STATUS", "TOOK", "OUTCOME", "NEXT", "ERROR"]
    return emit(a, d, lambda: f"{d.pending} waiting\n" + table(rows, head))
