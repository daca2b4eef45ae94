"""`fleet up --provider docker` as a user runs it: a machine created without a provider is a
container; stopping `fleet up` stops its containers (as it stops local machines), and the next
`fleet up` brings them back (the provisioner resumes live machines) on the new NATS address."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docker_env import docker_image, inspect, remove_containers
from tests.e2e.conftest import FleetUp, ok, start_fleet_up

__all__ = ["docker_image", "remove_containers"]
pytestmark = pytest.mark.usefixtures("docker_image", "remove_containers")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def ups(data_dir: Path) -> Iterator[list[FleetUp]]:
    """The `fleet up`s a test starts, each stopped at its end if the test did not."""
    started: list[FleetUp] = []
    yield started
    for up in started:
        up.stop()


def up_docker(data_dir: Path, ups: list[FleetUp]) -> FleetUp:
    up = start_fleet_up(data_dir, "--provider", "docker")
    ups.append(up)
    return up


def container(mid: str) -> Any:
    return asyncio.run(inspect(mid))


def test_docker_machines_stop_with_fleet_up_and_come_back_with_it(
    data_dir: Path, ups: list[FleetUp]
) -> None:
    first = up_docker(data_dir, ups)
    iid = json.loads(ok(first.cli("--json", "instances", "create", "boxed")))["id"]
    ok(first.cli("machines", "create", "--instance", iid, "--wait"))  # no --provider: the default
    mid = json.loads(ok(first.cli("--json", "machines", "list", "--instance", iid)))[0]["id"]
    info = container(mid)
    assert info is not None, "a machine created without a provider is a container"
    hostname = ok(first.cli("machines", "exec", mid, "--", "hostname")).strip()
    assert hostname == info["Config"]["Hostname"]
    ok(first.cli("machines", "exec", mid, "--", "sh", "-c", "echo kept > ~/mark"))

    assert first.stop() == 0
    assert container(mid)["State"]["Running"] is False

    second = up_docker(data_dir, ups)
    # The machine is unresponsive until its new daemon serves: it is back when its daemon
    # answers again. Each check is a CLI run (a second or so), so the loop paces itself.
    deadline = time.monotonic() + 60
    while (back := second.cli("machines", "exec", mid, "--", "sh", "-c", "hostname; cat ~/mark")
           ).returncode != 0:  # fmt: skip
        assert time.monotonic() < deadline, back.stderr
    assert back.stdout.split() == [hostname, "kept"]  # the same machine, its home kept
    assert container(mid)["State"]["Running"] is True
