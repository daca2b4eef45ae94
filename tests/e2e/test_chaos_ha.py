"""Chaos on `fleet up --ha`: 20 machines with a repo each; mid-batch the NATS node
that leads the event stream, the valkey primary, one replica of each stage service and one
gateway are SIGKILLed. Every create sent after the kills answers without a client retry (the
gateway rides out the failover itself), every machine ends ready, each repo is cloned once,
nothing is left unacked, the NATS node and valkey primary are restarted by `fleet up` and the
node catches up, and 10 more machines go ready afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import nats
import pytest
import redis.asyncio as aioredis
from nats.js import JetStreamContext

from contracts.bus import subjects
from contracts.bus.consumers import Durable, durable_name
from contracts.models import Machine
from contracts.status import MachineStatus
from fleet.client import FleetClient
from fleet.up import SENTINEL_MASTER
from tests.conftest import CloneLog
from tests.diagnose import wait_all
from tests.e2e.conftest import FleetUp, start_fleet_up
from tests.waiters import wait_until

# The chaos tier: `./run test` runs it after the rest (docs/development.md).
pytestmark = pytest.mark.chaos

MACHINES = 20
SECOND_BATCH = 10
STAGES = ("provisioner", "setup_pusher", "prober")
WAIT_S = 240


def _children(parent: int) -> list[tuple[int, str]]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent:
            out.append((int(entry.name), argv))
    return out


def _pid_of(up: FleetUp, needle: str) -> int:
    found = [pid for pid, argv in _children(up.proc.pid) if needle in argv]
    assert found, f"no {needle!r} under fleet up"
    return found[0]


def _gateway_ports(banner: str) -> list[int]:
    return [
        int(line.split("http://127.0.0.1:")[1].split()[0])
        for line in banner.splitlines()
        if line.strip().startswith("gateway")
    ]


@asynccontextmanager
async def _jetstream(up: FleetUp, urls: str) -> AsyncIterator[JetStreamContext]:
    auth = json.loads((up.data_dir / "nats-auth.json").read_text())
    nc = await nats.connect(
        urls.split(","),
        user="fleet-service",
        password=auth["service_password"],
        max_reconnect_attempts=-1,
    )
    try:
        yield nc.jetstream(timeout=10)
    finally:
        await nc.close()


async def _primary_port(up: FleetUp, sentinel_port: int) -> int:
    password = (up.data_dir / "redis-password").read_text().strip()
    r = aioredis.Redis(port=sentinel_port, password=password)
    try:
        reply = await r.execute_command("SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER)
        return int(reply[1])
    finally:
        await r.aclose()


@pytest.mark.timeout(420)
async def test_chaos_ha(tmp_path: Path, bare_repo: Path, clone_log: CloneLog) -> None:
    up = start_fleet_up(
        tmp_path / "data",
        "--ha",
        env={
            "FLEET_LOG_LEVEL": "warning",
            "PATH": os.environ["PATH"],
            "FLEET_SANDBOX_SHARE": f"{bare_repo}:{tmp_path / 'shim'}",
        },
    )
    urls = up.banner.split("  nats         ")[1].split()[0]
    sentinel_port = int(up.banner.split("  sentinels    127.0.0.1:")[1].split(",")[0])
    first_gw, second_gw = (f"http://127.0.0.1:{p}" for p in _gateway_ports(up.banner))
    started = time.monotonic()
    try:
        async with FleetClient(first_gw, up.token, timeout_s=60) as fleet:
            insts = await asyncio.gather(*(fleet.create_instance(f"h{n}") for n in range(MACHINES)))
            await asyncio.gather(
                *(fleet.add_repo(i.id, str(bare_repo), "feature", "src/app") for i in insts)
            )
            half = MACHINES // 2
            fleet.unavailable_tries = 1  # no client retry before the kills either
            machines = [await fleet.create_machine(i.id) for i in insts[:half]]
            assert fleet.unavailable_retries == 0
        async with _jetstream(up, urls) as js:
            leader = (await js.stream_info(subjects.STREAM_NAME)).cluster.leader  # type: ignore[union-attr]
        assert leader is not None
        primary = await _primary_port(up, sentinel_port)
        # The faults, all at once, while the first half is in the pipeline.
        faults = {
            f"nats node {leader} (stream leader)": _pid_of(up, f"/{_node_dir(leader)}/nats.conf"),
            f"valkey primary :{primary}": _valkey_pid(primary),
            **{f"{s} replica": _pid_of(up, f"services.{s}") for s in STAGES},
            "gateway (first)": _gateway_pid(up, first_gw),
        }
        for pid in faults.values():
            os.kill(pid, signal.SIGKILL)
        async with FleetClient(second_gw, up.token, timeout_s=60) as fleet:
            fleet.unavailable_tries = 1  # no client retry: every create must answer at once
            machines += [await fleet.create_machine(i.id) for i in insts[half:]]
            answered = time.monotonic() - started
            assert fleet.unavailable_retries == 0
            fleet.unavailable_tries = 8
            final = await wait_all(
                fleet,
                [m.id for m in machines],
                {"ready", "failed"},
                timeout_s=WAIT_S,
                nats_url=urls,
                nats_creds=_service_creds(up),
            )
            took = time.monotonic() - started
            not_ready = [m for m in final if m.status is not MachineStatus.READY]
            assert not not_ready, await _story(fleet, up, not_ready)
            homes = clone_log.homes()
            assert len(homes) == MACHINES, f"{len(homes)} clones for {MACHINES} machines"
            assert len(set(homes)) == MACHINES  # exactly once each
            # fleet up restarted the killed node (and valkey primary) on the same port and
            # store: it catches up with the stream.
            async with _jetstream(up, urls) as js:
                await wait_until(lambda: _caught_up(js, leader), timeout=60, every=0.5)
                await wait_until(lambda: _all_acked(js), timeout=60, every=0.5)
            node_conf = f"/{_node_dir(leader)}/nats.conf"
            assert _pid_of(up, node_conf) != faults[f"nats node {leader} (stream leader)"]
            assert _valkey_pid(primary) != faults[f"valkey primary :{primary}"]
            # After the faults: a second batch goes ready.
            more = await asyncio.gather(
                *(fleet.create_instance(f"b{n}") for n in range(SECOND_BATCH))
            )
            second = [await fleet.create_machine(i.id) for i in more]
            done = await wait_all(
                fleet,
                [m.id for m in second],
                {"ready", "failed"},
                timeout_s=120,
                nats_url=urls,
                nats_creds=_service_creds(up),
            )
            assert [m.status for m in done] == [MachineStatus.READY] * SECOND_BATCH
        print(
            f"\nchaos --ha: {MACHINES} machines ready in {took:.1f}s (created by {answered:.1f}s, "
            f"no client retry) after killing {list(faults)}"
        )
    finally:
        up.stop(timeout=120)


async def _story(fleet: FleetClient, up: FleetUp, machines: list[Machine]) -> str:
    """What happened to each machine: its stored events, the end of its daemon log and what
    the services logged of it."""
    lines = []
    for m in machines:
        lines.append(f"{m.id}: {m.status.value} ({m.status_reason})")
        stream = fleet.events(m.id, follow=False)
        async with contextlib.aclosing(stream):
            async for seq, event in stream:
                lines.append(f"  #{seq} {event.occurred_at:%H:%M:%S.%f} {type(event).__name__}")
        for log_path in up.data_dir.rglob(f"{m.id}/daemon.log"):
            lines += [f"  {log_path}:", *log_path.read_text(errors="replace").splitlines()[-40:]]
        for log_path in sorted((up.data_dir / "logs").glob("*.log")):  # the services'
            said = [ln for ln in log_path.read_text(errors="replace").splitlines() if m.id in ln]
            lines += [f"  {log_path.name}:", *said[-20:]] if said else []
    return "\n".join(lines)


def _node_dir(server_name: str) -> str:
    """``fleetd-1`` (a node's server name) -> ``nats-1`` (its directory in the data dir)."""
    return server_name.replace("fleetd", "nats")


def _service_creds(up: FleetUp) -> dict[str, str]:
    auth = json.loads((up.data_dir / "nats-auth.json").read_text())
    return {"user": "fleet-service", "password": auth["service_password"]}


def _valkey_pid(port: int) -> int:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # valkey rewrites its process title to "valkey-server 127.0.0.1:<port>" (a sentinel's
        # ends in " [sentinel]"): the address as a whole word, not a prefix of another port.
        words = b" ".join(argv).split()
        if (
            words[:1]
            and words[0].endswith(b"valkey-server")
            and f"127.0.0.1:{port}".encode() in words
        ):
            return int(entry.name)
    raise AssertionError(f"no valkey-server on port {port}")


def _gateway_pid(up: FleetUp, url: str) -> int:
    port = url.rsplit(":", 1)[1]
    for pid, argv in _children(up.proc.pid):
        if "services.gateway" not in argv:
            continue
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if f"FLEET_PORT={port}".encode() in environ:
            return pid
    raise AssertionError(f"no gateway on port {port}")


async def _caught_up(js: JetStreamContext, node: str) -> bool:
    info = await js.stream_info(subjects.STREAM_NAME)
    cluster = info.cluster
    if cluster is None:
        return False
    if cluster.leader == node:
        return True
    peer = next((p for p in cluster.replicas or [] if p.name == node), None)
    return peer is not None and bool(peer.current) and not peer.offline and not peer.lag


async def _all_acked(js: JetStreamContext) -> bool:
    for durable in Durable:  # `fleet up --ha`'s one host is named after this one
        info = await js.consumer_info(
            subjects.STREAM_NAME, durable_name(durable, socket.gethostname())
        )
        if (info.num_pending, info.num_ack_pending) != (0, 0):
            return False
    return True
