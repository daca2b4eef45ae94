"""Fixtures of the NATS auth tests: the authenticating server, the services' credentials, the
callout.

They override the suite's (tests/conftest.py) for this directory only, so its ``store``,
``bus``, ``spawn_daemon`` and ``stack`` run against the authenticating server with the services'
own credentials.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import msgspec
import pytest

from controlplane.security.crypto import SecretBox, generate_secret_key
from controlplane.settings import Settings
from fleet.up.embedded import NatsAuth, NatsServer, PortHold, ValkeyServer
from services.auth_callout.__main__ import build as build_callout
from tests.conftest import ADMIN_TOKEN


@pytest.fixture
def nats_auth(tmp_path: Path) -> tuple[NatsAuth, str]:
    return NatsAuth.load_or_create(tmp_path / "nats-auth.json")


@pytest.fixture
def nats_server(tmp_path: Path, nats_auth: tuple[NatsAuth, str]) -> Iterator[NatsServer]:
    """Of the test's own: configured with fleetd's accounts, users and auth callout."""
    with NatsServer(tmp_path / "nats", auth=nats_auth[0]) as server:
        yield server


@pytest.fixture
def settings(
    tmp_path: Path,
    nats_server: NatsServer,
    redis_server: ValkeyServer,
    key_prefix: str,
    nats_auth: tuple[NatsAuth, str],
) -> Iterator[Settings]:
    """The gateway's port held for the test (`PortHold`), as tests/conftest.py's `settings`."""
    auth, seed = nats_auth
    with PortHold() as console:
        yield Settings(
            nats_url=nats_server.url,
            nats_user=auth.SERVICE_USER,
            nats_password=auth.service_password,
            # Read by the gateway only (the stack runs every service with these settings).
            audit_nats_user=auth.AUDIT_USER,
            audit_nats_password=auth.audit_password,
            redis_url=redis_server.url,
            key_prefix=key_prefix,
            data_dir=str(tmp_path / "data"),
            secret_key=generate_secret_key(),
            admin_token=ADMIN_TOKEN,
            port=console.port,
            log_level="warning",
            ack_wait_s=5.0,
            probe_timeout_s=10.0,
            probe_interval_s=0.1,
            clone_timeout_s=30.0,
            callout_issuer_seed=seed,
        )


@pytest.fixture
async def callout(settings: Settings, nats_auth: tuple[NatsAuth, str]) -> AsyncIterator[None]:
    """The callout service, wired as its __main__ does, as the AUTH account's user."""
    auth, _ = nats_auth
    own = msgspec.structs.replace(
        settings, nats_user=auth.CALLOUT_USER, nats_password=auth.callout_password
    )
    async with AsyncExitStack() as es:
        await build_callout(own, es)
        yield


@pytest.fixture
def box(settings: Settings) -> SecretBox:
    return SecretBox(settings.secret_key)
