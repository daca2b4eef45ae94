"""Webhooks on the real servers: a machine's events reach a receiver on this host, each one
verified by the Standard Webhooks reference verifier; failures are retried with the same
``webhook-id``; a webhooks service killed mid-delivery loses nothing; a loopback URL is refused
unless the platform allows it. (The rules themselves: tests/unit/test_webhook_rules.py,
tests/fast/test_webhooks.py.)"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import msgspec
import pytest

from contracts.errors import InvalidParams
from controlplane.bus import Bus
from controlplane.process.stage import connect
from controlplane.settings import Settings
from fleet.client import FleetClient
from services.webhooks.service import enter_webhooks
from tests.conftest import running_stack
from tests.waiters import wait_until
from tests.webhook_receiver import Received, Receiver, receiver

#: What a new machine's events are up to ready, in order (others may come between: output).
PIPELINE = ["machine.created", "machine.provisioned", "machine.daemon-status-reported",
            "machine.setup-pushed", "machine.ready"]  # fmt: skip


def allowing(settings: Settings, **more: object) -> Settings:
    """The settings with the host's loopback allowed as a webhook's destination, and a retry
    schedule of fractions of a second."""
    return msgspec.structs.replace(settings, webhook_allow_private="127.0.0.1/32",
                                   webhook_retry_steps_s="0.2,0.4", **more)  # fmt: skip


@asynccontextmanager
async def webhooks_stack(settings: Settings) -> AsyncIterator[FleetClient]:
    """``running_stack`` on ``allowing(settings)``, the webhooks service beside it."""
    s = allowing(settings)
    async with running_stack(s) as client, AsyncExitStack() as es:
        store, bus = await connect(s, es, "webhooks")
        await enter_webhooks(es, s, store, bus)
        yield client


@pytest.fixture
async def hooks(tmp_path: Path) -> AsyncIterator[Receiver]:
    async with receiver() as r:
        yield r


async def stream_ids(client: FleetClient, machine_id: str) -> list[str]:
    """The machine's stored events' ids, in stream order."""
    return [e.event_id async for _, e in client.events(machine_id, follow=False)]


def pipeline_of(got: list[Received], machine_id: str) -> bool:
    return any(r.machine_id == machine_id and r.type == "machine.ready" for r in got)


async def test_a_new_machines_events_reach_the_receiver_signed_and_in_order(
    settings: Settings, hooks: Receiver
) -> None:
    async with webhooks_stack(settings) as client:
        inst = await client.create_instance("hooked")
        hook = await client.webhooks_create(hooks.url, ["*"], instance_id=inst.id)
        machine = await client.create_machine(inst.id)
        await hooks.until(lambda got: pipeline_of(got, machine.id))

        got = hooks.of(machine.id)
        for r in got:  # the reference verifier accepts every one, and reads what was sent
            payload = r.verified(hook.secret)
            assert payload["data"]["eventId"] == r.id
            assert payload["timestamp"] == payload["data"]["occurredAt"]
            assert payload["type"] == "machine." + payload["data"]["type"]
        types = [r.type for r in got]
        assert [t for t in types if t in PIPELINE] == PIPELINE, types
        # In stream order, each once: exactly what the stream holds up to ready.
        stored = await stream_ids(client, machine.id)
        assert [r.id for r in got] == stored[: len(got)]
        deliveries = await client.webhooks_deliveries(hook.id)
        assert {a.outcome for a in deliveries.attempts} == {"delivered"}
        assert {a.status for a in deliveries.attempts} == {200}


async def test_a_failing_receiver_gets_the_event_again_with_the_same_id(
    settings: Settings, hooks: Receiver
) -> None:
    hooks.answers.extend([500, 500])
    async with webhooks_stack(settings) as client:
        inst = await client.create_instance("flaky")
        hook = await client.webhooks_create(hooks.url, ["machine.created"], instance_id=inst.id)
        machine = await client.create_machine(inst.id)
        await hooks.until(lambda got: len(got) >= 3)

        assert [r.type for r in hooks.got] == ["machine.created"] * 3
        assert len({r.id for r in hooks.got}) == 1  # one event: the receiver's dedup key
        assert len({r.headers["webhook-timestamp"] for r in hooks.got}) >= 1
        for r in hooks.got:
            assert r.verified(hook.secret)["data"]["machineId"] == machine.id

        async def settled() -> bool:
            return (await client.webhooks_deliveries(hook.id)).pending == 0

        await wait_until(settled, timeout=10)
        attempts = list(reversed((await client.webhooks_deliveries(hook.id)).attempts))
        assert [(a.attempt, a.status, a.outcome) for a in attempts] == [
            (1, 500, "retrying"), (2, 500, "retrying"), (3, 200, "delivered")]  # fmt: skip
        assert attempts[0].next_attempt_at is not None
        assert attempts[0].error == "HTTP 500"
        assert len(hooks.got) == 3  # and nothing more once it was delivered


async def test_a_killed_webhooks_service_loses_nothing(
    settings: Settings, bus: Bus, hooks: Receiver, tmp_path: Path
) -> None:
    # A short ack wait: the fan-out's lock (three of them) passes soon to the new process.
    s = allowing(settings, ack_wait_s=1.0, webhook_timeout_s=2.0)
    env = {**os.environ, **s.to_env(), "FLEET_LOG_LEVEL": "info"}
    log = tmp_path / "webhooks.log"
    hooks.open.clear()  # the first request is kept waiting: a delivery under way
    async with running_stack(s) as client, AsyncExitStack() as es:
        first = await _webhooks_process(env, log)
        es.push_async_callback(_reap, first)
        await _leading(log, 1)  # its consumer reads from now on
        inst = await client.create_instance("killed")
        await client.webhooks_create(hooks.url, ["*"], instance_id=inst.id)
        machine = await client.create_machine(inst.id)
        await hooks.until(lambda got: len(got) >= 1)
        held = hooks.got[0]
        assert held.type == "machine.created"

        first.send_signal(signal.SIGKILL)  # mid-delivery: its answer never comes
        await first.wait()
        hooks.open.set()
        second = await _webhooks_process(env, log)
        es.push_async_callback(_reap, second)
        await _leading(log, 2)  # once the dead one's lock ran out
        await client.wait_for(machine.id, ["ready"], timeout_s=60)
        await hooks.until(lambda got: pipeline_of(got, machine.id), timeout=60)

        stored = await stream_ids(client, machine.id)
        ids = [r.id for r in hooks.of(machine.id)]
        upto = stored.index(hooks.of(machine.id)[-1].id) + 1
        assert set(stored[:upto]) <= set(ids), "an event was lost"
        assert ids.count(held.id) >= 2, "the delivery cut short was not made again"
        first_seen = list(dict.fromkeys(ids))
        assert first_seen == stored[:upto], "out of order"


async def test_a_loopback_url_is_refused_by_default(settings: Settings) -> None:
    assert settings.webhook_allow_private == ""
    async with running_stack(settings) as client:
        inst = await client.create_instance("ssrf")
        for url in ("http://127.0.0.1:8080/hook", "http://localhost/hook",
                    "http://[::1]/hook", "http://169.254.169.254/latest/meta-data",
                    "http://10.0.0.1/hook", f"http://127.0.0.1:{settings.port}/rpc"):  # fmt: skip
            with pytest.raises(InvalidParams) as refused:
                await client.webhooks_create(url, ["*"], instance_id=inst.id)
            assert refused.value.data == {"field": "$.url"} or "url" in str(refused.value)
        assert (await client.webhooks_list(instance_id=inst.id)).webhooks == []


async def _webhooks_process(env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with open(log, "ab") as out:  # noqa: ASYNC230 - a local file, opened once
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.webhooks", env=env, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip


async def _leading(log: Path, processes: int) -> None:
    await wait_until(lambda: log.read_text().count("webhooks.fanout_leading") >= processes,
                     timeout=30)  # fmt: skip


async def _reap(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()
