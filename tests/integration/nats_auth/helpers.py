"""Helpers of the NATS auth tests: enrolled machines, attacking connections, what the server
and the stream saw."""

from __future__ import annotations

import json
import uuid
from typing import Any

import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client as NATS

from contracts.bus import subjects
from contracts.bus.events import DaemonStatusReported, encode_event
from controlplane.bus import Bus
from controlplane.security.crypto import SecretBox, mint_machine_token
from controlplane.store import Store
from fleet.up import NatsServer
from tests.conftest import DaemonProc, SpawnDaemon
from tests.waiters import subscribed, wait_until

STATUS = subjects.EventKind.DAEMON_STATUS_REPORTED
REFUSED = "Authorization Violation"


async def enroll(store: Store, box: SecretBox) -> tuple[str, str]:
    """A machine record with a token, as the provisioner leaves it: (machine id, token)."""
    machine = await store.create_machine("i-" + uuid.uuid4().hex[:16], "local")
    token = mint_machine_token()
    assert await store.claim_machine_secret(machine.id, box.encrypt(token))
    return machine.id, token


class Attacker:
    """A NATS connection as some machine, recording the errors the server reports."""

    def __init__(self) -> None:
        self.errors: list[Exception] = []

    async def on_error(self, exc: Exception) -> None:
        self.errors.append(exc)

    def violations(self, kind: str, subject: str) -> list[str]:
        """The server's permission errors for ``kind`` ("publish", "subscription") on
        ``subject`` (nats-py lower-cases them)."""
        wanted = f'permissions violation for {kind} to "{subject}"'.lower()
        return [str(e) for e in self.errors if wanted in str(e).lower()]

    async def violated(self, kind: str, subject: str) -> None:
        await wait_until(lambda: bool(self.violations(kind, subject)), timeout=5)


async def connect_as(
    server: NatsServer, user: str, password: str, attacker: Attacker | None = None
) -> NATS:
    """Connect once, no reconnects, with the machine's private inbox prefix."""
    a = attacker or Attacker()
    prefix = subjects.machine_inbox_prefix(user) if user.startswith("m-") else "_INBOX"
    nc = NATS()
    try:
        await nc.connect(
            server.url,
            user=user,
            password=password,
            inbox_prefix=prefix,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            connect_timeout=5,
            error_cb=a.on_error,
        )
    except BaseException:
        await nc.close()  # a refused client leaves its socket open otherwise
        raise
    return nc


async def refused(server: NatsServer, user: str, password: str) -> None:
    with pytest.raises(nats.errors.Error, match=REFUSED):
        await connect_as(server, user, password)


async def connz(bus: Bus, machine_id: str) -> list[dict[str, Any]]:
    """The APP account's open connections authenticated as ``machine_id``."""
    reply = await bus.nc.request(
        "$SYS.REQ.ACCOUNT.PING.CONNZ",
        json.dumps({"user": machine_id, "auth": True}).encode(),
        timeout=5,
    )
    conns: list[dict[str, Any]] = json.loads(reply.data)["data"]["connections"] or []
    return conns


async def boot(
    bus: Bus, spawn_daemon: SpawnDaemon, machine_id: str, token: str, **env: str
) -> DaemonProc:
    """A real daemon connecting with the machine's credentials; returns once it is ready."""
    async with subscribed(bus.nc, subjects.event(STATUS, machine_id)) as inbox:
        d = spawn_daemon(machine_id, FLEET_MACHINE_TOKEN=token, **env)
        event = await inbox.next_event(timeout=15)
    assert isinstance(event, DaemonStatusReported)
    assert event.status == "ready"
    return d


async def stream_seq(bus: Bus, subject: str) -> int:
    """The stream sequence of the last message on ``subject`` (0: none)."""
    try:
        return int((await bus.js.get_last_msg(subjects.STREAM_NAME, subject)).seq or 0)
    except nats.js.errors.NotFoundError:
        return 0


def forged_report(machine_id: str, status: str = "stopping") -> bytes:
    return encode_event(
        DaemonStatusReported(
            event_id=uuid.uuid4().hex,
            machine_id=machine_id,
            status=status,  # type: ignore[arg-type]
            version="6.6.6",
            git_sha=None,
            boot_id="forged",
        )
    )
