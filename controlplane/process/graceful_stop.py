"""Asking a machine's daemon to stop before its access is revoked.

Revoked first, the daemon would be cut off before it could report ``stopping``: it would wait
for NATS, log an unclean shutdown and be SIGKILLed about 5 s later. Asked first, it reports
``stopping``, ends its processes and exits 0, and the revocation that follows finds nothing left
to kick.
"""

from __future__ import annotations

import asyncio

import msgspec
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from contracts.bus import subjects
from contracts.bus.events import DaemonStatusReported, decode_event
from contracts.daemon.rpc import STOP
from contracts.errors import FleetError
from contracts.rpc.jsonrpc import NoParams
from controlplane.calls.daemon_client import DaemonClient

log = structlog.get_logger(__name__)


async def ask_to_stop(nc: NATS, daemons: DaemonClient, machine_id: str, *, wait_s: float) -> bool:
    """Ask the daemon to stop (``daemon.stop``) and wait at most ``wait_s`` for its
    ``stopping`` report. True if it came; False at once if no daemon answers."""
    stopping = asyncio.Event()

    async def on_report(msg: Msg) -> None:
        try:
            event = decode_event(msg.data)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return  # not ours to judge here: the stages log malformed events
        if isinstance(event, DaemonStatusReported) and event.status == "stopping":
            stopping.set()

    # Subscribed before asking, so that a quick report cannot slip past.
    subject = subjects.event(subjects.EventKind.DAEMON_STATUS_REPORTED, machine_id)
    sub = await nc.subscribe(subject, cb=on_report)
    try:
        try:
            await daemons.call(machine_id, STOP, NoParams(), timeout_s=wait_s)
        except FleetError as exc:  # not running, not connected, or too old to know the method
            log.info("archive.daemon_not_asked", machine_id=machine_id, error=str(exc))
            return False
        try:
            await asyncio.wait_for(stopping.wait(), wait_s)
        except TimeoutError:
            log.warning("archive.no_stopping_report", machine_id=machine_id, wait_s=wait_s)
            return False
        log.info("archive.daemon_stopping", machine_id=machine_id)
        return True
    finally:
        await sub.unsubscribe()
