"""The single-node `fleet up` restarts its embedded nats-server and valkey when they die
(SIGKILL), on the same ports and data dirs: what was stored is still there, and the pipeline
goes on (a machine created afterwards goes ready). Each test kills part of its stack, so each
takes a `fleet up` of its own (``fleet_up``), never the shared one."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from fleet.up import banner_ports
from tests.e2e.conftest import FleetUp, read_until
from tests.e2e.test_chaos_ha import _children


def _server_pid(up: FleetUp, needle: str) -> int:
    found = [pid for pid, argv in _children(up.proc.pid) if needle in argv]
    assert len(found) == 1, f"{needle!r} under fleet up: {found}"
    return found[0]


def _restarted(up: FleetUp, needle: str, old_pid: int, log: Path, timeout_s: float = 60) -> None:
    """A server other than ``old_pid`` runs under ``fleet up`` (one only) within ``timeout_s``;
    else the end of its log says why."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [pid for pid, argv in _children(up.proc.pid) if needle in argv]
        if len(found) == 1 and found[0] != old_pid:
            return
        if time.monotonic() > deadline:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
            raise AssertionError(f"{needle!r} not running again under fleet up: {found}\n{tail}")
        time.sleep(0.05)


def ok_json(up: FleetUp, *args: str) -> object:
    result = up.cli("--json", *args, timeout=120)
    assert result.returncode == 0, f"{args}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


@pytest.mark.timeout(240)
def test_fleet_up_restarts_its_nats_and_valkey(fleet_up: FleetUp, tmp_path: Path) -> None:
    up = fleet_up
    before = ok_json(up, "instances", "create", "before")
    assert isinstance(before, dict)
    nats_pid = _server_pid(up, f"{up.data_dir}/nats/nats.conf")
    valkey_pid = _server_pid(up, "valkey-server")
    os.kill(nats_pid, signal.SIGKILL)
    os.kill(valkey_pid, signal.SIGKILL)

    said = read_until(up.proc, "restarted nats-server", timeout=60)
    if "restarted valkey" not in said:
        said += read_until(up.proc, "restarted valkey", timeout=60)
    assert "nats-server exited with -9" in said
    assert "valkey exited with -9" in said
    # "restarted" says a server was spawned, not that it runs yet: each is awaited.
    _restarted(up, f"{up.data_dir}/nats/nats.conf", nats_pid, up.data_dir / "nats" / "nats.log")
    _restarted(up, "valkey-server", valkey_pid, up.data_dir / "redis" / "valkey.log")

    # The state survived (valkey's append-only file), and the CLI rides out the restart
    # (1501 Unavailable is retried) instead of failing.
    after = ok_json(up, "instances", "create", "after")
    assert isinstance(after, dict)
    names = {i["name"] for i in ok_json(up, "instances", "list")}  # type: ignore[attr-defined]
    assert {"before", "after"} <= names
    created = up.cli(
        "machines", "create", "--instance", after["id"], "--wait", "--timeout", "90", timeout=150
    )
    assert created.returncode == 0, f"{created.stdout}\n{created.stderr}"
    assert created.stdout.splitlines()[-1].split()[2] == "ready"


def _answers(url: str) -> bool:
    with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:  # noqa: S310
        return bool(r.status == 200)
    return False


@pytest.mark.timeout(180)
def test_port_0_the_banners_ports_answer_and_a_killed_gateway_comes_back_on_them(
    fleet_up: FleetUp,
) -> None:
    """`fleet up --port 0` (what `fleet_up` runs) listens on ports the kernel gave, which its
    banner names; the gateway SIGKILLed is started again on the same two ports."""
    up = fleet_up
    url, previews = banner_ports(up.banner)
    port = urlsplit(url).port
    assert port, up.banner
    assert previews not in (0, port), up.banner
    assert _answers(url), f"nothing answers at {url}"
    with socket.create_connection(("127.0.0.1", previews), 5):
        pass
    gateway = _server_pid(up, "-m services.gateway")
    os.kill(gateway, signal.SIGKILL)
    read_until(up.proc, "restarted gateway", timeout=60)
    _restarted(up, "-m services.gateway", gateway, up.data_dir / "logs" / "gateway.log")
    deadline = time.monotonic() + 60
    while not _answers(url):  # each try is an HTTP request: there is no other signal
        assert time.monotonic() < deadline, f"the restarted gateway never answered at {url}"
        time.sleep(0.1)
    with socket.create_connection(("127.0.0.1", previews), 5):
        pass
