"""``instances.setEnvironment`` checks a devcontainer.json when it is set, through every service:
the gateway (which reaches no repo) asks a provisioner of the platform's host over NATS
(``host.checkEnvironment``), which checks the repo out and refuses what a machine's resolution
would refuse, by name; the environment is not stored. The same through
``fleet instances environment``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.errors import EnvironmentRefused
from contracts.gateway.environments import DevcontainerSource, Environment
from controlplane.settings import Settings
from fleet.client import FleetClient
from tests.conftest import ADMIN_TOKEN, git

REFUSED = """{
  // a project's file that asks for the host
  "image": "python:3.12",
  "runArgs": ["--privileged"],
  "mounts": ["source=/var/run/docker.sock,target=/var/run/docker.sock,type=bind",],
}"""


def origin(tmp_path: Path) -> str:
    work = tmp_path / "origin"
    git("init", "-q", "-b", "main", str(work))
    (work / ".devcontainer").mkdir()
    (work / ".devcontainer" / "devcontainer.json").write_text(REFUSED)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "env", cwd=work)
    return str(work)


@pytest.mark.timeout(120)
async def test_refused_when_set_through_the_hosts_provisioner(
    stack: FleetClient, settings: Settings, tmp_path: Path
) -> None:
    inst = await stack.create_instance("checked")
    await stack.add_repo(inst.id, url=origin(tmp_path), branch="main", path="src/app")
    env = Environment(devcontainer=DevcontainerSource(repo="src/app"))
    with pytest.raises(EnvironmentRefused) as refused:
        await stack.set_environment(inst.id, env)
    assert refused.value.data == {"properties": ["runArgs", "mounts"]}
    assert "runArgs" in refused.value.message
    assert "/var/run/docker.sock" in refused.value.message
    assert (await stack.get_environment(inst.id)).environment is None

    cli = await asyncio.to_thread(_fleet, settings, "instances", "environment", inst.id,
                                  "--devcontainer", "src/app")  # fmt: skip
    assert cli.returncode == 4, cli.stderr
    assert cli.stderr.startswith("fleet: error 1620: .devcontainer/devcontainer.json: refused")
    assert "runArgs" in cli.stderr
    shown = await asyncio.to_thread(_fleet, settings, "instances", "environment", inst.id)
    assert shown.stdout.strip() == "auto (a repo's devcontainer.json, else default)"


def _fleet(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLEET_URL": f"http://127.0.0.1:{settings.port}",
           "FLEET_TOKEN": ADMIN_TOKEN}  # fmt: skip
    argv = [sys.executable, "-c", "from fleet.cli.entry import main; main()", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
