"""What `fleet up --provider docker` and `fleet image build` do before any machine starts: the
machines' bridge network (whose gateway address NATS then listens on) and the machine image,
built when missing with each step printed."""

from __future__ import annotations

import asyncio
import sys
import time

import aiodocker

from providers.code import code_repo
from providers.docker import ensure_network, stop_stack
from providers.docker_image import Say
from providers.registry import docker_provider, stack_id
from services.common.settings import Settings


def say_to_stdout(prefix: str) -> Say:
    start = time.monotonic()

    def say(text: str) -> None:
        print(f"{prefix}: [{time.monotonic() - start:5.1f}s] {text}", file=sys.stderr, flush=True)

    return say


async def prepare(settings: Settings, prefix: str) -> tuple[str, str]:
    """(the network's gateway address, the machine image's tag), built if missing."""
    say = say_to_stdout(prefix)
    provider = docker_provider(settings, code_repo(settings.code_repo), say=say)
    async with provider:
        gateway = await ensure_network(provider.docker, settings.docker_network)
        image = await provider.image()
    say(f"image {image}; machines' network {settings.docker_network} (NATS on {gateway})")
    return gateway, image


def prepare_sync(settings: Settings, prefix: str) -> tuple[str, str]:
    return asyncio.run(prepare(settings, prefix))


async def stop_docker_machines(settings: Settings) -> int:
    """Stop this stack's running containers (``fleet up`` stopping); 0 without an engine. The
    next ``fleet up`` makes them again (the provisioner resumes live machines)."""
    try:
        async with aiodocker.Docker() as docker:
            return await stop_stack(docker, stack_id(settings))
    except (OSError, ValueError):  # no engine here (no socket, none answers): no machines
        return 0
    except aiodocker.DockerError as exc:
        print(f"fleet up: could not stop docker machines: {exc.message}", file=sys.stderr)
        return 0
