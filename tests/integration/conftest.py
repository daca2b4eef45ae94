"""Fixtures of the integration tests on the clustered layout of `fleet up --ha`."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.settings import Settings
from fleet.up import SENTINEL_MASTER, HaServers


@pytest.fixture
def ha(tmp_path: Path) -> Iterator[HaServers]:
    """A layout of the test's own: every test of the HA modules kills a node, a primary or
    both (but the sentinel pool's burst in test_ha.py, which alone would gain nothing from a
    module's layout), and a layout whose nodes were killed is not the one it started as."""
    with HaServers(tmp_path / "ha", auth=None, redis_password=secrets.token_urlsafe(16)) as s:
        yield s


@pytest.fixture
def ha_settings(ha: HaServers) -> Settings:
    return Settings(
        nats_url=ha.nats_url,
        redis_url=ha.redis_url,
        stream_replicas=3,
        redis_sentinels=ha.sentinel_addrs,
        redis_sentinel_master=SENTINEL_MASTER,
    )
