"""One stack for a whole module of attack tests (test_isolation.py, test_warm_pool_isolation.py,
test_network_isolation.py): what the attacks need of the platform, made once per module rather
than once per test. Their modules take these as module-scoped fixtures of their own, named
``settings`` and ``stack``, and say which of their tests share machines and which make their own.

Not the worker's servers (tests/conftest.py's ``shared_settings``): NATS must listen where both
providers' machines reach it (the docker machines' network gateway), and valkey on a TCP port
of the loopback with a password, as `fleet up` runs it, for the attacks to prove that port out of
a machine's reach (the worker's listens on a unix socket only).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

from controlplane.settings import Settings
from fleet.client import FleetClient
from fleet.up import NatsServer, ValkeyServer
from tests.conftest import held_settings, make_bare_repo, running_stack
from tests.docker_env import remove_stacks_under
from tests.gitserver import GitHttpServer

#: The test repository's credentials on `git_server`.
GIT_USER, GIT_PASSWORD = "git", "s3cret"


@contextmanager
def attack_settings(tmp: Path, gateway: str) -> Iterator[Settings]:
    """Settings under ``tmp``: NATS on ``gateway``, valkey on a TCP port with a password, and
    the test repository (``tmp/repo.git``, a FLEET_SANDBOX_SHARE path) made first: a pooled
    local machine started before a shared path exists is (rightly) not claimed."""
    make_bare_repo(tmp)
    with servers_on(tmp, gateway, unix=False) as made:
        yield made


@contextmanager
def servers_on(tmp: Path, host: str, *, unix: bool) -> Iterator[Settings]:
    """Settings under ``tmp`` on a NATS of their own on ``host`` and a valkey of their own with
    a password, on a unix socket (``unix``) or a TCP port."""
    with (
        NatsServer(tmp / "nats", host=host) as nats,
        ValkeyServer(tmp / "redis", password=secrets.token_urlsafe(16), unix=unix) as redis,
        held_settings(tmp, nats, redis) as made,
    ):
        yield made


@asynccontextmanager
async def attack_stack(settings: Settings) -> AsyncIterator[FleetClient]:
    """`running_stack` on ``settings``; once it has stopped, the containers and volumes of its
    docker machines are removed (what ``remove_containers`` does for a test's own stack)."""
    try:
        async with running_stack(settings) as client:
            yield client
    finally:
        await remove_stacks_under(settings.data_path.parent)


@asynccontextmanager
async def git_server(settings: Settings, gateway: str) -> AsyncIterator[GitHttpServer]:
    """The test repository over HTTP on ``gateway``, where both kinds of machine reach it."""
    async with GitHttpServer(settings.data_path.parent, GIT_USER, GIT_PASSWORD, host=gateway) as s:
        yield s
