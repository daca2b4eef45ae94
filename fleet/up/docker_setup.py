"""What `fleet up --provider docker` and `fleet image build` do before any machine starts: the
machines' bridge network (whose gateway address NATS then listens on) and the machine image,
built when missing with each step printed."""

from __future__ import annotations

import asyncio
import sys
import time

import aiodocker

from base.platform_code import code_repo
from controlplane.policy import engine_refusal
from controlplane.settings import Settings
from providers.docker import Say, ensure_network, stop_stack
from providers.registry import docker_provider, stack_id


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


def network_gateway_sync(settings: Settings) -> str:
    """The machines' bridge network's gateway address (the network made if missing): where
    NATS listens for gvisor machines too, whose loopback is gVisor's own (docs/runtimes.md)."""

    async def gateway() -> str:
        async with aiodocker.Docker() as docker:
            return await ensure_network(docker, settings.docker_network)

    return asyncio.run(gateway())


def engine_runtime_refusal(settings: Settings) -> str | None:
    """Why the Docker engine cannot run gvisor machines (its runsc runtime missing, or not
    registered as they need: controlplane/policy/runtimes.py ``engine_refusal``), else None."""

    async def runtimes() -> object:
        async with aiodocker.Docker() as docker:
            return (await docker.system.info()).get("Runtimes")

    try:
        got = asyncio.run(runtimes())
    except (OSError, ValueError, AssertionError, aiodocker.DockerError) as exc:
        return f"the Docker engine does not answer ({exc}): it runs docker machines"
    return engine_refusal(got if isinstance(got, dict) else None, settings.gvisor_platform)


async def stop_docker_machines(settings: Settings, *, expected: bool) -> int:
    """Stop this stack's running containers (``fleet up`` stopping); how many. The next ``fleet
    up`` makes them again (the provisioner resumes live machines). Without an engine (none
    configured, or none answers) there is nothing to stop: silently so, unless this stack runs
    docker machines (``expected``: its default provider or its warm pool), when one line says
    they could not be stopped."""
    try:
        docker = aiodocker.Docker()
    except AssertionError:  # aiodocker's way to say: no DOCKER_HOST, no context, no socket
        return _no_engine(expected, "no Docker engine is configured")
    try:
        async with docker:
            return await stop_stack(docker, stack_id(settings))
    except (OSError, ValueError) as exc:  # no socket there, or not an engine's
        return _no_engine(expected, str(exc))
    except aiodocker.DockerError as exc:
        if exc.status == _CANNOT_CONNECT:
            return _no_engine(expected, exc.message)
        print(f"fleet up: could not stop docker machines: {exc.message}", file=sys.stderr)
        return 0


#: aiodocker's DockerError status when the engine does not answer at all (not an HTTP status).
_CANNOT_CONNECT = 900


def _no_engine(expected: bool, why: str) -> int:
    if expected:
        print(f"fleet up: could not stop docker machines: {why}", file=sys.stderr)
    return 0
