"""The docker warm pool's lifeline, with a real engine, real containers and a real provisioner
process that the tests SIGKILL: a dead provisioner's unclaimed pooled containers end by
themselves (their stdin closes: ``supervisor: pool_orphaned``), with no other provisioner
running; the next pool's start removes them and their volumes; a machine claimed from the pool
lives on (its stdin was handed over and closed already); one claimed but never handed over is
made again by the restarted provisioner's resume; one that dies between its claim and its
hand-over is told apart (the machine then starts cold)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import aiodocker
import msgspec
import pytest

from base.poolwire import POOL_CLAIMED_LOG, POOL_ORPHANED_LOG, POOL_UP_LOG
from contracts.errors import ProviderError
from contracts.ids import new_machine_id
from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.docker.names import (
    LABEL_MACHINE,
    LABEL_POOL,
    LABEL_POOL_OWNER,
    LABEL_STACK,
    POOL_PREFIX,
    container_name,
)
from providers.docker.pool import DockerPoolBackend, pool_volume
from providers.registry import docker_provider
from providers.warm_pool import owner_name
from tests.conftest import ADMIN_TOKEN
from tests.docker_env import (
    docker_gateway,
    docker_image,
    docker_json,
    home_volume,
    inspect,
    nats_server,
    remove_containers,
)
from tests.integration.test_pipeline import PIPELINE
from tests.integration.test_warm_pool import docker_pooled, inside, ready_machine
from tests.pool_owner import READY
from tests.waiters import wait_until

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")


async def container(name: str) -> Any:
    async with aiodocker.Docker() as docker:
        return await docker_json(docker, f"containers/{name}/json")


async def logs(name: str) -> str:
    async with aiodocker.Docker() as docker:
        c = await docker.containers.get(name)
        return "".join(await c.log(stdout=True, stderr=True))


async def ended(name: str) -> None:
    """Until the container has exited by itself (a positive signal: its state)."""

    async def exited() -> bool:
        info = await container(name)
        return info is not None and info["State"]["Status"] == "exited"

    await wait_until(exited, timeout=20, every=0.1)


async def volume_exists(name: str) -> bool:
    async with aiodocker.Docker() as docker:
        return await docker_json(docker, f"volumes/{name}") is not None


@asynccontextmanager
async def process(argv: list[str], settings: Settings, log: Path) -> AsyncIterator[Any]:
    """A process with the stack's settings (``FLEET_*``); killed and reaped on the way out.
    Its stderr goes to ``log``, its stdout to ``log`` with suffix ``.out`` (``ready_line``):
    never a pipe, which a process whose output nobody reads fills, and which its children
    hold open past its kill (the pipe's transport was then left unclosed)."""
    env = {**os.environ, **settings.to_env()}
    with log.open("wb") as err, log.with_suffix(".out").open("wb") as out:
        proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=out, stderr=err)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def ready_line(owner: Any, log: Path) -> str:
    """What the process started with ``log`` printed after ``READY``, once it did."""

    def line() -> str | None:
        with contextlib.suppress(FileNotFoundError):
            for text in log.with_suffix(".out").read_text().splitlines():
                if text.startswith(READY):
                    return text.removeprefix(READY)
        return None

    def up() -> bool:
        if line() is not None:
            return True
        assert owner.returncode is None, "the pool's owner ended before its pool was up"
        return False

    await wait_until(up, timeout=120, every=0.1)
    found = line()
    assert found is not None
    return found


async def test_a_sigkilled_owners_pool_ends_itself_and_the_next_start_removes_it(
    settings: Settings, tmp_path: Path
) -> None:
    """The operator's worry: a provisioner with one pooled container waiting and one claimed
    but not yet handed over is SIGKILLed (no clean-up runs). Its unclaimed container ends by
    itself, no other provisioner running; the next pool's start removes it with its volume
    and leaves the claimed one (a machine's) be, which a resume makes again with its home."""
    mid = new_machine_id()
    argv = [sys.executable, "-m", "tests.pool_owner", mid]
    log = tmp_path / "owner.log"
    async with process(argv, settings, log) as owner:
        slots = json.loads(await ready_line(owner, log))
        owner.kill()  # SIGKILL
        await owner.wait()
    orphan = f"{POOL_PREFIX}{slots['orphan']}"
    await ended(orphan)
    assert POOL_ORPHANED_LOG in await logs(orphan)

    async with docker_provider(settings, Path.cwd()) as provider:
        assert await DockerPoolBackend(provider).remove_orphans() == 1
        assert await container(orphan) is None
        assert not await volume_exists(pool_volume(slots["orphan"]))
        claimed = await inspect(mid)  # left be: a machine's
        assert claimed["Config"]["Labels"][LABEL_POOL] == slots["claimed"]

        async def restarted_waiting() -> bool:
            """Its stdin closed too; the claim's restart policy started it again, waiting."""
            said = await logs(container_name(mid))
            return said.count(POOL_UP_LOG) == 2 and POOL_ORPHANED_LOG in said

        await wait_until(restarted_waiting, timeout=20, every=0.1)
        assert POOL_CLAIMED_LOG not in await logs(container_name(mid))

        external = await provider.start(mid, "t0ken-" + "x" * 40)  # resume(): made again
        info = await inspect(mid)
        assert external == f"docker:{info['Id'][:12]}"
        assert info["Config"]["Labels"][LABEL_MACHINE] == mid
        assert home_volume(info) == pool_volume(slots["claimed"])  # the home it had
        await provider.remove(mid)
        assert await inspect(mid) is None


async def test_a_claimed_machine_outlives_its_provisioner(
    settings: Settings, tmp_path: Path
) -> None:
    """The provisioner runs as its own process with a pool of one; a machine is created from
    the pool; the provisioner is SIGKILLed. The pool's refill ends by itself, and the claimed
    machine still runs and answers (its stdin was handed over and closed before the kill)."""
    from services.gateway.__main__ import build as gateway
    from services.prober.__main__ import build as prober
    from services.setup_pusher.__main__ import build as setup_pusher

    settings = msgspec.structs.replace(settings, warm_pool="docker=1", warm_pool_min_available_mb=0)
    argv = [sys.executable, "-m", "services.provisioner"]
    async with AsyncExitStack() as es:
        for build in (setup_pusher, prober, gateway):
            await build(settings, es)
        provisioner = await es.enter_async_context(
            process(argv, settings, tmp_path / "provisioner.log")
        )
        client = FleetClient(f"http://127.0.0.1:{settings.port}", ADMIN_TOKEN, timeout_s=30)
        es.push_async_callback(client.close)
        slot = await docker_pooled(settings)
        mid, kinds = await ready_machine(
            client, (await client.create_instance("lives")).id, "docker"
        )
        assert kinds == PIPELINE
        assert (await inspect(mid))["Config"]["Labels"][LABEL_POOL] == slot
        refill = await docker_pooled(settings, frozenset({slot}))

        provisioner.kill()  # SIGKILL
        await provisioner.wait()
        await ended(f"{POOL_PREFIX}{refill}")
        assert await inside(client, mid, "print('still here')") == "still here\n"
        info = await inspect(mid)
        assert info["State"]["Running"]
        assert info["RestartCount"] == 0
        assert POOL_ORPHANED_LOG not in await logs(container_name(mid))


async def test_a_claimed_container_that_dies_before_its_hand_over_is_told_apart(
    settings: Settings,
) -> None:
    """The engine keeps a dead container's stdin attach open (a write goes nowhere): the
    hand-over must still see that the claimed container ended since its claim, so that the
    provisioner starts the machine cold instead of waiting for a report that never comes."""
    async with docker_provider(settings, Path.cwd()) as provider:
        backend = DockerPoolBackend(provider)
        try:
            machine = await backend.spawn(lambda: None)
            await machine.wait_up()
            mid = new_machine_id()
            await machine.claim(mid)
            async with aiodocker.Docker() as docker:
                await (await docker.containers.get(container_name(mid))).kill()

            async def seen_dead() -> bool:
                return not machine.alive

            await wait_until(seen_dead, timeout=15, every=0.05)
            with pytest.raises(ProviderError, match="ended before its hand-over"):
                await machine.hand_over("t0ken-" + "x" * 40)
        finally:
            await backend.close()


async def legacy_pooled(provider: Any, slot: str, owner: str) -> str:
    """A running pooled container as a provisioner before the lifeline made one: its owner
    label a pid, no attach holding it (nothing ends it by itself)."""
    config = {
        "Image": await provider.image(),
        "Entrypoint": ["sleep", "600"],
        "Cmd": [],
        "Labels": {LABEL_POOL: slot, LABEL_POOL_OWNER: owner, LABEL_STACK: provider.stack},
    }
    name = f"{POOL_PREFIX}{slot}"
    c = await provider.docker.containers.create(config, name=name)
    await c.start()
    return name


async def test_a_pool_made_before_the_lifeline_goes_once_its_process_is_gone(
    settings: Settings, tmp_path: Path
) -> None:
    """The upgrade: a SIGKILLed old provisioner's pooled container runs for ever (no lifeline)
    and only that process could claim it. A pool start removes it; one whose process still
    runs on this host is left be (that provisioner may claim it yet)."""
    async with docker_provider(settings, Path.cwd()) as provider:
        # pid 4194304 never exists (Linux's pid_max is at most 2^22): its process is gone.
        gone = await legacy_pooled(provider, "p00000000000000a1", "4194304-1-deadbeef")
        mine = await legacy_pooled(provider, "p00000000000000a2", owner_name(os.getpid()))
        assert (await container(gone))["State"]["Status"] == "running"
        assert await DockerPoolBackend(provider).remove_orphans() == 1
        assert await container(gone) is None
        assert (await container(mine))["State"]["Status"] == "running"


async def test_a_spawn_cancelled_midway_leaves_no_volume_and_no_container(
    settings: Settings,
) -> None:
    """A pool closed while a slot is made (the provisioner stopping): the slot's volumes and
    container made so far are removed, never left to the engine with no record of them."""
    async with docker_provider(settings, Path.cwd()) as provider, aiodocker.Docker() as docker:
        backend = DockerPoolBackend(provider)
        owned = {"label": [f"{LABEL_POOL_OWNER}={backend.owner}"]}

        async def volumes() -> list[str]:
            found = await docker.volumes.list(filters=owned)  # type: ignore[no-untyped-call]
            return [v["Name"] for v in found.get("Volumes") or []]

        async def made_some() -> bool:
            return bool(await volumes())

        try:
            spawn = asyncio.ensure_future(backend.spawn(lambda: None))
            await wait_until(made_some, timeout=60, every=0.01)  # its home, before the rest
            home = (await volumes())[0]
            spawn.cancel()
            with pytest.raises(asyncio.CancelledError):
                await spawn
            assert await volumes() == []
            assert await docker.containers.list(all=True, filters=owned) == []
            # Nor a helper the engine made after the cancel (it would make the home again).
            using = {"volume": [home]}
            assert await docker.containers.list(all=True, filters=using) == []
            names = await docker.volumes.list()  # type: ignore[no-untyped-call]
            assert home not in [v["Name"] for v in names.get("Volumes") or []]
        finally:
            await backend.close()
