"""A fork with memory never speaks as its source (docs/fork-snapshots.md): it holds its source's
credential in memory, and that copy is refused by the auth callout, tried from inside the fork;
the fork's daemon is connected as the fork. Real runsc sandboxes, real daemons, NATS with
fleetd's auth callout at an address of the host gVisor's network stack reaches
(tests/integration/test_gvisor.py says why)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import msgspec
import pytest

from controlplane.bus import Bus
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from fleet.up.embedded import NatsAuth, NatsServer
from tests.integration.nats_auth.helpers import connz
from tests.integration.nats_auth.test_machine_network import HANDSHAKE
from tests.integration.test_gvisor import host_address, ready_gvisor
from tests.waiters import wait_until


@pytest.fixture
def nats_server(tmp_path: Path, nats_auth: tuple[NatsAuth, str]) -> Iterator[NatsServer]:
    with NatsServer(tmp_path / "nats", auth=nats_auth[0], host=host_address()) as server:
        yield server


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, runtime="gvisor")


async def login(stack: FleetClient, mid: str, url: str, user: str, password: str) -> str:
    """What NATS answers a CONNECT as ``user`` made from inside machine ``mid``."""
    at = urlsplit(url)
    creds = json.dumps({"user": user, "pass": password})
    argv = ["python3", "-c", HANDSHAKE, str(at.hostname), str(at.port), creds]
    result = await stack.exec(mid, argv, timeout_s=120)
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.timeout(900)
async def test_a_forks_copy_of_its_sources_credential_is_refused_from_inside_the_fork(
    callout: None, stack: FleetClient, stack_settings: Settings, bus: Bus, store: Store,
    box: SecretBox,
) -> None:  # fmt: skip
    mid = await ready_gvisor(stack, "gv-fork-creds")
    sealed = await store.machine_secret(mid)
    assert sealed is not None
    copied = box.decrypt(sealed)  # in the source's memory: in every fork's after the fork
    url = stack_settings.nats_url
    # Good until the fork: the source's own processes are let in with it. (That connection
    # is closed by the machine, which blocks a checkpoint for a minute: tried from the host.)
    [conn] = await connz(bus, mid)
    assert conn["authorized_user"] == mid

    [fork] = [m.id for m in await stack.fork_machine(mid, 1, memory=True)]
    got = await stack.wait_for(fork, ["ready", "failed"], timeout_s=600)
    assert got.status == "ready", got.status_reason

    # From inside the fork, the source's credential as it was: refused.
    answer = await login(stack, fork, url, mid, copied)
    assert answer.startswith("INFO "), answer  # the server is reached
    assert answer.endswith("-ERR 'Authorization Violation'"), answer
    # The fork's daemon is connected as the fork; the source's, as the source, with its
    # renewed credential.
    await wait_until(lambda: _connected_as(bus, fork), timeout=120, every=0.5)
    await wait_until(lambda: _connected_as(bus, mid), timeout=120, every=0.5)
    renewed = await store.machine_secret(mid)
    assert renewed is not None
    assert box.decrypt(renewed) != copied
    assert (await stack.exec(mid, ["echo", "source"], timeout_s=60)).stdout == "source\n"
    assert (await stack.exec(fork, ["echo", "fork"], timeout_s=60)).stdout == "fork\n"


async def _connected_as(bus: Bus, mid: str) -> bool:
    return [c["authorized_user"] for c in await connz(bus, mid)] == [mid]
