"""From inside a machine (both providers), NATS is the one platform server in reach, and only
as the machine's own user: its daemon is connected as itself, while a connection made by the
machine's own commands, without credentials or with a made-up user, is refused at CONNECT.

NATS authenticates here and listens on the docker machines' network gateway, which local
machines reach through pasta (as NATS on the host's loopback is reached through the one
forwarded port: every other local test).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from contracts.status import MachineStatus
from controlplane.bus import Bus
from controlplane.settings import Settings
from fleet.client import FleetClient
from fleet.up.embedded import NatsAuth, NatsServer
from tests.docker_env import docker_gateway, docker_image, remove_containers
from tests.integration.nats_auth.helpers import connz

__all__ = ["docker_gateway", "docker_image", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")


@pytest.fixture
def nats_server(
    tmp_path: Path, nats_auth: tuple[NatsAuth, str], docker_gateway: str
) -> Iterator[NatsServer]:
    with NatsServer(tmp_path / "nats", auth=nats_auth[0], host=docker_gateway) as server:
        yield server


#: NATS's wire protocol by hand, from inside the machine: INFO, then CONNECT with the given
#: credentials (none: {}), then PING; what the server answered.
HANDSHAKE = """
import json, socket, sys
host, port, creds = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
s = socket.create_connection((host, port), timeout=10)
f = s.makefile("rb")
info = f.readline()
connect = {"verbose": False, "pedantic": False, "protocol": 1, **creds}
s.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\\r\\nPING\\r\\n")
try:
    print(info[:5].decode() + " | " + f.readline().decode().strip())
except OSError as exc:
    print(info[:5].decode() + " | " + type(exc).__name__)
"""


@pytest.mark.parametrize("provider", ["local", "docker"])
async def test_nats_answers_a_machine_only_as_its_own_user(
    callout: None, stack: FleetClient, bus: Bus, settings: Settings, provider: str
) -> None:
    inst = await stack.create_instance("alice")
    machine = await stack.create_machine(inst.id, provider)  # type: ignore[arg-type]
    done = await stack.wait_for(machine.id, ("ready", "failed"), timeout_s=60)
    assert done.status is MachineStatus.READY, done.status_reason
    # Its daemon is in, as the machine itself.
    [conn] = await connz(bus, machine.id)
    assert conn["authorized_user"] == machine.id
    url = urlsplit(settings.nats_url)
    answers = {}
    for name, creds in {
        "anonymous": {},
        "made-up": {"user": machine.id, "pass": "not-its-token"},
        "services' user": {"user": "fleet-services", "pass": "guessed"},
    }.items():
        argv = ["python3", "-c", HANDSHAKE, str(url.hostname), str(url.port), json.dumps(creds)]
        result = await stack.exec(machine.id, argv, timeout_s=30)
        assert result.exit_code == 0, result.stderr
        answers[name] = result.stdout.strip()
    # The server is reached (it says INFO) and refuses every one of them.
    for name, answer in answers.items():
        assert answer.startswith("INFO "), (name, answer)
        assert "PONG" not in answer, (name, answer)
        assert answer.endswith("-ERR 'Authorization Violation'"), (name, answer)
