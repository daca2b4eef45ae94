"""A provisioner's docker pool in a process of its own, for the tests that SIGKILL it:
``python -m tests.pool_owner MACHINE_ID`` (the settings from ``FLEET_*``) starts two pooled
containers, claims the second for ``MACHINE_ID`` without handing over its identity (a
provisioner that dies between the claim and the hand-over), prints one line, ``READY`` and
``{"orphan": <slot>, "claimed": <slot>}``, once both wait (the provider logs on stdout too),
and then waits to be killed."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from controlplane.settings import Settings
from providers.docker import DockerPoolBackend
from providers.registry import docker_provider

READY = "pool-owner-ready "


async def main(machine_id: str) -> None:
    async with docker_provider(Settings.from_env(), Path.cwd()) as provider:
        backend = DockerPoolBackend(provider)
        orphan = await backend.spawn(lambda: None)
        claimed = await backend.spawn(lambda: None)
        await asyncio.gather(orphan.wait_up(), claimed.wait_up())
        await claimed.claim(machine_id)
        print(READY + json.dumps({"orphan": orphan.slot, "claimed": claimed.slot}), flush=True)
        await asyncio.Event().wait()  # until SIGKILLed: no clean-up of any kind runs


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
