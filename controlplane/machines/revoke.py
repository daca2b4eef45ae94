"""Revoking a machine's NATS access: from now on the callout refuses its token, and its live
connections are closed.

``revoke_machine`` needs only a service's own NATS connection (account ``APP``): the server
answers ``$SYS.REQ.ACCOUNT.PING.CONNZ`` in every account with that account's connections, and
the embedded configuration (``fleet.up.embedded.NatsAuth``) imports the system account's
``$SYS.REQ.SERVER.<id>.KICK`` into ``APP``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from contracts.bus import subjects
from controlplane.store import Store

log = structlog.get_logger(__name__)

CONNZ_SUBJECT = subjects.ACCOUNT_CONNZ
kick_subject = subjects.server_kick


class RevokeError(Exception):
    """A connection could not be closed; retrying may help."""


async def revoke_machine(store: Store, nc: NATS, machine_id: str, *, timeout_s: float = 2.0) -> int:
    """Revoke the machine's token and close its live NATS connections; returns how many were
    closed. Idempotent. The mark comes first, so a connection authorizing while this runs is
    either refused by the callout or found here."""
    await store.revoke_machine_token(machine_id)
    return await kick_machine(nc, machine_id, timeout_s=timeout_s)


async def kick_machine(nc: NATS, machine_id: str, *, timeout_s: float = 2.0) -> int:
    """Close every connection authenticated as ``machine_id`` on every server."""
    found = await machine_connections(nc, machine_id, timeout_s=timeout_s)
    if found is None:
        # A NATS without a system account: it cannot list or close connections.
        log.warning("revoke.connz_unavailable", machine_id=machine_id)
        return 0
    kicked = 0
    for server_id, cid in found:
        try:
            reply = await nc.request(
                kick_subject(server_id), json.dumps({"cid": cid}).encode(), timeout=timeout_s
            )
        except nats.errors.NoRespondersError:
            # A NATS without fleetd's auth configuration (no KICK import): machines are not
            # authenticated there, so there is nothing to enforce; stopping the machine is all.
            log.info("revoke.kick_unavailable", machine_id=machine_id, server_id=server_id)
            return kicked
        except nats.errors.TimeoutError as exc:
            raise RevokeError(f"server {server_id} did not answer the kick") from exc
        error = _json(reply.data).get("error")
        if error:  # typically: the connection closed on its own in the meantime
            log.info("revoke.kick_refused", machine_id=machine_id, cid=cid, error=error)
            continue
        kicked += 1
        log.info("revoke.kicked", machine_id=machine_id, server_id=server_id, cid=cid)
    return kicked


async def machine_connections(
    nc: NATS, machine_id: str, *, timeout_s: float = 2.0, quiet_s: float = 0.1
) -> list[tuple[str, int]] | None:
    """(server id, client id) of each open connection authenticated as ``machine_id``, from
    every server that answers (after the first answer, each next one within ``quiet_s``);
    None if no server answers at all."""
    inbox = nc.new_inbox()
    answers: asyncio.Queue[Msg] = asyncio.Queue()

    async def on_msg(msg: Msg) -> None:
        answers.put_nowait(msg)

    sub = await nc.subscribe(inbox, cb=on_msg)
    try:
        query = {"user": machine_id, "auth": True, "limit": 1024}  # open ones (the default)
        await nc.publish(CONNZ_SUBJECT, json.dumps(query).encode(), reply=inbox)
        found: list[tuple[str, int]] = []
        answered = False
        while True:
            try:
                msg = await asyncio.wait_for(answers.get(), quiet_s if answered else timeout_s)
            except TimeoutError:
                break
            if msg.headers and msg.headers.get("Status") == "503":  # no responders
                break
            answered = True
            body = _json(msg.data)
            if body.get("error"):
                log.warning("revoke.connz_error", machine_id=machine_id, error=body["error"])
            data = body.get("data") or {}
            server_id = (body.get("server") or {}).get("id") or data.get("server_id")
            for conn in data.get("connections") or []:
                if server_id and conn.get("authorized_user") == machine_id:
                    found.append((str(server_id), int(conn["cid"])))
        return found if answered else None
    finally:
        await sub.unsubscribe()


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
