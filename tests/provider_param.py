"""The provider as a test parameter: a module that imports ``provider`` and ``nats_server``
from here (re-exported in its ``__all__``) runs each test that takes a machine once per
provider, ``local`` and ``docker``. A check that only makes sense for one provider says so with
``@pytest.mark.parametrize("provider", ["local"])`` and stays in the same module.

Only the ``docker`` cases take the Docker engine's fixtures (tests/docker_env.py), at run
time: tests/conftest.py knows them by their ``provider`` parameter and runs them in the
Docker lanes, while the ``local`` cases run on any worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fleet.up import NatsServer

PROVIDERS = ("local", "docker")
#: The parameter tests/conftest.py reads to run a test's ``docker`` case in the Docker lanes.
PARAM = "provider"
DOCKER = "docker"


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    """The provider of the test's machines; a ``docker`` case's containers and volumes are
    removed after it (``remove_containers``, set up first: torn down after the stack)."""
    if request.param == DOCKER:
        request.getfixturevalue("remove_containers")
    return str(request.param)


@pytest.fixture
def nats_server(
    tmp_path: Path, provider: str, request: pytest.FixtureRequest
) -> Iterator[NatsServer]:
    """NATS where the provider's machines reach it: a docker case's, of its own, on the
    machines' network gateway (tests/docker_env.py), a local case's the worker's, on loopback
    (tests/conftest.py). A test that shadows ``provider`` with its own parametrize still has
    its containers removed."""
    if provider != DOCKER:
        with request.getfixturevalue("worker_servers").lend_nats() as shared:
            yield shared
        return
    request.getfixturevalue("remove_containers")  # first: removed after the stack has stopped
    with NatsServer(tmp_path / "nats", host=request.getfixturevalue("docker_gateway")) as server:
        yield server
