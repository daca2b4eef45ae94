"""The audit log against the real stack: every kind of entry read back through ``audit.list``
and through ``fleet audit``, secrets absent from the raw stream, admins and auditors only."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from structlog.testing import capture_logs

from contracts.errors import Forbidden, NotFound, PortUnreachable
from contracts.gateway import audit as a
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.cli.tunnel import open_tunnel
from fleet.client import FleetClient
from services.gateway.auth.audit_log import AuditLog, audit_stream_config
from tests.conftest import ADMIN_TOKEN, new_ready_machine as ready_machine
from tests.integration.test_metrics import scrape, value
from tests.waiters import wait_until

ENV_SECRET = "env-value-that-must-never-be-stored-7f3a"
FILE_SECRET = "file-content-that-must-never-be-stored-91c2"
NO_MACHINE = "m-00000000000000aa"


#: Retention the operator set: applied to the stream.
MAX_AGE_S, MAX_BYTES = 7 * 86400.0, 64 * 1024 * 1024


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, audit_max_age_s=MAX_AGE_S, audit_max_bytes=MAX_BYTES)


async def entry(client: FleetClient, method: str, **filters: Any) -> a.AuditEntry:
    """The newest entry of ``method`` (waiting for it: entries are stored off the call path)."""
    found: list[a.AuditEntry] = []

    async def stored() -> bool:
        found[:] = await client.audit(method=method, **filters)
        return bool(found)

    await wait_until(stored, timeout=10)
    return found[0]


async def raw_stream(settings: Settings) -> bytes:
    """Every entry's bytes as stored, read straight from the stream (whose retention is the
    operator's)."""
    nc = await nats.connect(settings.nats_url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(a.AUDIT_STREAM)
        assert (info.config.max_age, info.config.max_bytes) == (MAX_AGE_S, MAX_BYTES)
        msgs = [await js.get_msg(a.AUDIT_STREAM, seq) for seq in
                range(info.state.first_seq, info.state.last_seq + 1)]  # fmt: skip
        return b"\n".join(m.data or b"" for m in msgs)
    finally:
        await nc.close()


async def fleet_audit(settings: Settings, *args: str) -> list[dict[str, Any]]:
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from fleet.cli.entry import main; main()", "--json", "audit", *args,
        env={"FLEET_URL": f"http://127.0.0.1:{settings.port}", "FLEET_TOKEN": ADMIN_TOKEN},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode == 0, err
    entries: list[dict[str, Any]] = json.loads(out)
    return entries


async def test_every_kind_is_recorded_redacted_and_read_back(
    stack: FleetClient, settings: Settings, tmp_path: Path
) -> None:
    mid = await ready_machine(stack, "audited")
    inst = (await stack.get_machine(mid)).instance_id
    # A state-changing call, with a secret in its params.
    await stack.set_env("API_KEY", ENV_SECRET, inst)
    # A failed call, with its error code.
    with pytest.raises(NotFound):
        await stack.archive_machine(NO_MACHINE)
    # Tokens created and revoked.
    token = await stack.create_token("ci", inst)
    await stack.revoke_token(token.id)
    # A terminal opened and attached.
    opened = await stack.open_session(mid, ["sh"])
    ws = await stack.attach_session(mid, opened.session_id)
    await ws.close()
    # Files up and down.
    local = tmp_path / "up.txt"
    local.write_text(FILE_SECRET)
    await stack.upload(mid, local, "audited/up.txt")
    await stack.download(mid, "audited/up.txt", tmp_path / "down.txt")
    # A tunnel (to a port nothing listens on: recorded with its error) and a preview ticket.
    with pytest.raises(PortUnreachable):
        await open_tunnel(stack, mid, 9)
    await stack.preview_ticket(mid, 8000)

    env_set = await entry(stack, "env.set", instance_id=inst)
    assert (env_set.actor, env_set.ok, env_set.machine_id) == ("admin", True, None)
    assert env_set.params == {"instanceId": inst, "name": "API_KEY", "value": a.REDACTED}
    assert env_set.client_address == "127.0.0.1"
    assert "aiohttp" in (env_set.user_agent or "")
    failed = await entry(stack, "machines.archive", machine_id=NO_MACHINE)
    assert (failed.ok, failed.error_code, failed.result) == (False, NotFound.code, None)
    created = await entry(stack, "tokens.create", instance_id=inst)
    assert created.result == {"id": token.id, "token": a.REDACTED}
    revoked = await entry(stack, "tokens.revoke")
    assert revoked.params == {"id": token.id}
    assert revoked.ok
    for method in ("sessions.open", a.Action.TERMINAL_ATTACH, a.Action.FILE_UPLOAD,
                   a.Action.FILE_DOWNLOAD, "machines.previewTicket"):  # fmt: skip
        got = await entry(stack, method, machine_id=mid)
        assert (got.ok, got.instance_id, got.actor) == (True, inst, "admin"), got
    tunnel = await entry(stack, a.Action.TUNNEL_OPEN, machine_id=mid)
    assert (tunnel.ok, tunnel.error_code, tunnel.params["port"]) == (
        False, PortUnreachable.code, 9)  # fmt: skip
    ticket = await entry(stack, "machines.previewTicket", machine_id=mid)
    assert ticket.result is not None
    assert ticket.result["ticket"] == a.REDACTED
    # Read-only calls are not recorded.
    assert await stack.audit(method="machines.get") == []

    # The same entries through the CLI.
    listed = await fleet_audit(settings, "--since", "10m", "--limit", "100")
    methods = {e["method"] for e in listed}
    assert methods >= {"env.set", "tokens.create", "tokens.revoke", "sessions.open",
                       a.Action.TERMINAL_ATTACH, a.Action.FILE_UPLOAD, a.Action.FILE_DOWNLOAD,
                       a.Action.TUNNEL_OPEN, "machines.previewTicket",
                       "machines.archive"}  # fmt: skip
    failed_cli = await fleet_audit(settings, "--machine", NO_MACHINE, "--method",
                                   "machines.archive", "--actor", "admin")  # fmt: skip
    assert [(e["ok"], e["errorCode"]) for e in failed_cli] == [(False, NotFound.code)]

    # Counted on the gateway's /metrics: every entry stored, none dropped.
    _, _, samples = await scrape(f"http://127.0.0.1:{settings.port}/metrics")
    assert (value(samples, "fleet_audit_entries_total", outcome="stored") or 0) >= len(listed)
    assert value(samples, "fleet_audit_entries_total", outcome="dropped") == 0

    # Secrets never reach the stream.
    raw = await raw_stream(settings)
    assert b"API_KEY" in raw
    for secret in (ENV_SECRET, token.token, FILE_SECRET):
        assert secret.encode() not in raw


async def test_filters_limit_and_who_may_read(stack: FleetClient) -> None:
    inst = await stack.create_instance("one")
    other = await stack.create_instance("two")
    for i in range(5):
        await stack.set_env(f"V{i}", "x", inst.id)
    await stack.set_env("W", "x", other.id)
    await entry(stack, "env.set", instance_id=other.id)
    await wait_until(lambda: _count(stack, inst.id, 5), timeout=10)
    newest = await stack.audit(instance_id=inst.id, limit=2)
    assert [e.params["name"] for e in newest] == ["V4", "V3"]
    later = datetime.now(UTC) + timedelta(hours=1)
    assert await stack.audit(since=later) == []
    token = await stack.create_token("not-an-admin", inst.id)
    async with FleetClient(stack.url, token.token) as member:
        with pytest.raises(Forbidden):
            await member.audit()
    # A platform auditor reads it all; a member (owner of an instance) does not.
    await stack.create_user("audrey@example.com", role="auditor")
    await stack.create_user("mel@example.com")
    await stack.set_member(inst.id, "mel@example.com", "owner")
    auditors = await stack.create_scoped_token("auditor's", user="audrey@example.com")
    members = await stack.create_scoped_token("member's", user="mel@example.com")
    async with FleetClient(stack.url, auditors.token) as auditor:
        seen = await auditor.audit(instance_id=inst.id, method="env.set", limit=2)
        assert [e.params["name"] for e in seen] == ["V4", "V3"]
    async with FleetClient(stack.url, members.token) as member:
        with pytest.raises(Forbidden):
            await member.audit(instance_id=inst.id)


async def _count(client: FleetClient, instance_id: str, n: int) -> bool:
    return len(await client.audit(instance_id=instance_id, method="env.set")) == n


async def test_leaving_stores_what_was_recorded(settings: Settings, store: Store) -> None:
    """Recorded in a burst, and the gateway stops at once: every entry is stored first."""
    async with AuditLog(settings, store) as log:
        for i in range(300):
            log.record("env.set", actor="admin", machine_id=NO_MACHINE, params={"name": f"V{i}"})
    assert (log.stored, log.dropped) == (300, 0)
    async with AuditLog(settings, store) as reader:
        got = await reader.entries(a.AuditListParams(machine_id=NO_MACHINE, limit=1000))
    assert [e.params["name"] for e in got.entries] == [f"V{i}" for i in reversed(range(300))]


async def test_an_entry_the_stream_refuses_is_dropped_with_its_reason_the_rest_stored(
    settings: Settings, store: Store
) -> None:
    """Each entry of a batch is stored on its own: one the stream refuses (here, larger than
    the stream takes) is counted dropped, logged with the stream's reason, and the entries
    around it are stored."""
    with capture_logs() as logs:
        async with AuditLog(settings, store) as log:
            small = dataclasses.replace(audit_stream_config(settings), max_msg_size=1024)
            await log.nc.jetstream().update_stream(small)
            large = {"name": "large"} | {f"k{i}": "x" * 200 for i in range(8)}  # > 1 KiB
            for params in ({"name": "before"}, large, {"name": "after"}):
                log.record("env.set", actor="admin", machine_id=NO_MACHINE, params=params)
    assert (log.stored, log.dropped) == (2, 1)
    dropped = [e for e in logs if e["event"] == "audit.dropped"]
    assert len(dropped) == 1
    assert "size" in dropped[0]["reason"]  # the stream's own words
    async with AuditLog(settings, store) as reader:
        got = await reader.entries(a.AuditListParams(machine_id=NO_MACHINE, limit=10))
    assert [e.params["name"] for e in got.entries] == ["after", "before"]
