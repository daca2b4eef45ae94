"""What `fleet up --provider docker` and `fleet image build` do before any machine starts: the
machines' bridge network (whose gateway address NATS then listens on) and the machine image,
built when missing with each step printed."""

from __future__ import annotations

import asyncio
import sys
import time

from providers.code import code_repo
from providers.docker import ensure_network
from providers.docker_image import Say
from providers.registry import docker_provider
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
