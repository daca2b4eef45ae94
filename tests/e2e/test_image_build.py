"""`fleet image build` as an operator runs it: with the image there it says so at once; when the
daemon's code changes (here in a copy of the checkout, never the repo itself) the image's tag
changes and the new one is built."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from base.version import SOURCE_ROOT
from tests.docker_env import docker_image

__all__ = ["docker_image"]
pytestmark = pytest.mark.usefixtures("docker_image")
#: What `fleet image build` imports: fleetd's packages (the copy must be whole to be used).
PACKAGES = ("contracts", "base", "daemon", "fleet", "providers", "controlplane", "services")
TAG = re.compile(r"fleetd-machine:[0-9a-f]{16}")


def image_build(root: Path, data: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEET_")}
    env |= {"PYTHONPATH": str(root), "FLEET_DATA_DIR": str(data)}
    done = subprocess.run(
        [sys.executable, "-c", "from fleet.cli.entry import main; main()", "image", "build"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def changed_copy(tmp_path: Path) -> Path:
    """A copy of the checkout whose daemon differs by one comment."""
    root = tmp_path / "checkout"
    for pkg in PACKAGES:
        shutil.copytree(SOURCE_ROOT / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    with (root / "daemon" / "__init__.py").open("a") as f:
        f.write(f"# changed by {__name__} at {time.time()}\n")
    return root


def test_an_up_to_date_image_is_reported_at_once(tmp_path: Path) -> None:
    done = image_build(SOURCE_ROOT, tmp_path / "data")
    assert "is up to date" in done.stderr
    assert "building fleetd-machine" not in done.stderr


def test_changed_daemon_code_gets_a_new_tag(tmp_path: Path, changed_copy: Path) -> None:
    same = image_build(SOURCE_ROOT, tmp_path / "data")
    current = set(TAG.findall(same.stderr))
    assert len(current) == 1
    done = image_build(changed_copy, tmp_path / "data")
    built = set(TAG.findall(done.stderr))
    assert built, done.stderr
    assert built.isdisjoint(current), done.stderr
    assert "built fleetd-machine" in done.stderr
    for tag in built:  # not left behind for the next run
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, check=False)
