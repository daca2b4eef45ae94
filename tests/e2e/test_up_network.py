"""`fleet up` as it starts by default (local machines, NATS embedded on the host's loopback):
a machine reaches NATS, forwarded into its own network namespace, and nothing else of the
host's loopback. The network tests of both providers (tests/integration/
test_network_isolation.py) run with NATS on the docker bridge; this is the loopback case."""

from __future__ import annotations

import json
import re
import socket

from tests.e2e.conftest import FleetUp
from tests.integration.test_network_isolation import CONNECT


def banner_port(banner: str, scheme: str) -> int:
    found = re.search(rf"{scheme}://\S*?127\.0\.0\.1:(\d+)", banner)
    assert found, banner
    return int(found.group(1))


def test_a_machine_reaches_nats_and_nothing_else_of_the_hosts_loopback(
    shared_fleet_up: FleetUp,
) -> None:
    up = shared_fleet_up
    iid = up.cli("instances", "create", "walled").stdout.strip()
    created = up.cli("machines", "create", "--instance", iid, "--wait", "--timeout", "60")
    assert created.returncode == 0, created.stdout + created.stderr
    mid = json.loads(up.cli("--json", "machines", "list", "--instance", iid).stdout)[0]["id"]
    with socket.socket() as listener:  # a server of the host's, on its loopback only
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        ports = {
            "nats": banner_port(up.banner, "nats"),
            "valkey": banner_port(up.banner, "redis"),
            "gateway": int(up.url.rsplit(":", 1)[1]),
            "a host server": listener.getsockname()[1],
        }
        targets = json.dumps([["127.0.0.1", p] for p in ports.values()])
        ran = up.cli("machines", "exec", mid, "--", "python3", "-c", CONNECT, targets)
        assert ran.returncode == 0, ran.stderr
        seen = json.loads(ran.stdout)
        got = {name: seen[f"127.0.0.1:{port}"] for name, port in ports.items()}
        assert got["nats"] == "connected", got
        assert {n: r for n, r in got.items() if n != "nats" and r == "connected"} == {}, got
        # Each of them does answer on the host: the machine could have reached them.
        for port in ports.values():
            socket.create_connection(("127.0.0.1", port), timeout=3).close()
