"""Every provider by name, for the processes that need more than one."""

from __future__ import annotations

from pathlib import Path

from providers.base import MachineControl
from providers.local import LocalProvider
from providers.swarm import SwarmProvider
from services.common.settings import Settings


def code_installers(settings: Settings, repo: Path) -> dict[str, MachineControl]:
    """Each provider's way of acting on its running machines (machines.refreshCode, .restart)."""
    local = LocalProvider(
        data_dir=settings.data_path, nats_url=settings.nats_url, environ={}, code_repo=repo,
        sandbox=settings.sandbox == "bwrap", shared=settings.sandbox_shared,
    )  # fmt: skip
    swarm = SwarmProvider(data_dir=settings.data_path, nats_url=settings.nats_url, environ={})
    return {local.name: local, swarm.name: swarm}
