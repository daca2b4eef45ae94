"""The sshd paths the setup pusher uses (contracts.daemon.machine_files) are where the docker
image's
recipe puts its config and where a machine's home is."""

from __future__ import annotations

from pathlib import PurePosixPath

from contracts.daemon.machine_files import SSHD_CONFIG, SSHD_HOST_KEY
from providers.docker.image import DOCKERFILE, FLEET_LIB, MACHINE_HOME


def test_the_sshd_paths_are_the_images() -> None:
    assert PurePosixPath(SSHD_CONFIG).parent == PurePosixPath(FLEET_LIB)
    assert PurePosixPath(SSHD_HOST_KEY).is_relative_to(MACHINE_HOME)
    assert f"COPY sshd_config {SSHD_CONFIG}" in DOCKERFILE
