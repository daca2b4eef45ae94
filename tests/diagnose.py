"""When a wait for machines times out, say what each one was waiting on.

A bare ``TimeoutError`` after minutes says nothing; this reports, for every machine that did not
reach a wanted status, its status and reason, its last stored event, and the state of every
stage's durable consumer (pending, unacked, redelivered, waiting pulls), so a hang under load
names the stage and the event it stopped at.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Collection, Sequence

import nats
import nats.errors
import structlog

from contracts.bus import subjects
from contracts.bus.consumers import Durable, durable_name
from contracts.models import Machine
from fleet.client import FleetClient

log = structlog.get_logger(__name__)


async def wait_all(
    fleet: FleetClient,
    machine_ids: Sequence[str],
    statuses: Collection[str],
    *,
    timeout_s: float,
    nats_url: str = "",
    nats_creds: dict[str, str] | None = None,
) -> list[Machine]:
    """``fleet.wait_for`` each machine together; on timeout, fail with what each waited on."""
    try:
        async with asyncio.timeout(timeout_s):
            return list(
                await asyncio.gather(*(fleet.wait_for(m, statuses, timeout_s) for m in machine_ids))
            )
    except TimeoutError:
        text = await stuck_report(fleet, machine_ids, statuses, nats_url, nats_creds or {})
        log.error("test.wait_timed_out", timeout_s=timeout_s, report=text)
        raise AssertionError(
            f"machines not {sorted(statuses)} after {timeout_s:g}s:\n{text}"
        ) from None


async def stuck_report(
    fleet: FleetClient,
    machine_ids: Sequence[str],
    statuses: Collection[str],
    nats_url: str,
    nats_creds: dict[str, str],
) -> str:
    lines: list[str] = []
    for mid in machine_ids:
        try:
            machine = await asyncio.wait_for(fleet.get_machine(mid), 10)
        except Exception as exc:  # noqa: BLE001 - a report must be written whatever fails
            lines.append(f"{mid}: machines.get failed: {exc!r}")
            continue
        if machine.status.value in statuses:
            continue
        lines.append(
            f"{mid}: {machine.status.value} ({machine.status_reason}) since "
            f"{machine.updated_at:%H:%M:%S.%f}; last event: {await _last_event(fleet, mid)}"
        )
    lines.append(f"{len(lines)} of {len(machine_ids)} not {sorted(statuses)}")
    if nats_url:
        lines += await _consumers(nats_url, nats_creds)
    return "\n".join(lines)


async def _last_event(fleet: FleetClient, machine_id: str) -> str:
    last = "none"
    try:
        async with asyncio.timeout(10):
            stream = fleet.events(machine_id, follow=False)
            async with contextlib.aclosing(stream):
                async for seq, event in stream:
                    last = f"#{seq} {type(event).__name__} at {event.occurred_at:%H:%M:%S.%f}"
    except Exception as exc:  # noqa: BLE001 - a report must be written whatever fails
        last += f" (events failed: {exc!r})"
    return last


async def _consumers(nats_url: str, creds: dict[str, str]) -> list[str]:
    lines = []
    try:
        servers = nats_url.split(",")  # a cluster's URLs, as `fleet up --ha` prints them
        nc = await nats.connect(servers, connect_timeout=5, max_reconnect_attempts=1, **creds)
    except (nats.errors.Error, OSError) as exc:
        return [f"consumers: cannot connect to NATS: {exc!r}"]
    try:
        js = nc.jetstream(timeout=5)
        for durable in Durable:  # a per-host one: this host's (fleet up's default host id)
            name = durable_name(durable, socket.gethostname())
            try:
                info = await js.consumer_info(subjects.STREAM_NAME, name)
            except (nats.errors.Error, TimeoutError) as exc:
                lines.append(f"consumer {name}: {exc!r}")
                continue
            lines.append(
                f"consumer {name}: pending {info.num_pending}, unacked "
                f"{info.num_ack_pending}, redelivered {info.num_redelivered}, waiting pulls "
                f"{info.num_waiting}, delivered seq {info.delivered.stream_seq}, "
                f"ack floor {info.ack_floor.stream_seq}"
            )
    finally:
        await nc.close()
    return lines
