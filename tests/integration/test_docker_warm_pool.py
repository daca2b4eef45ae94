"""The docker warm pool with a real engine, the real machine image, real daemons, NATS and
valkey: a claim goes through the cold pipeline, carries nothing of another instance and puts
no token where ``docker inspect`` shows it; an empty pool starts cold; a dead pooled container
is replaced; a claimed container stopped (``fleet up`` stopping) is made again with its home.
Few tests, each with a pool of one: every container start costs CPU the suite shares. The
lifeline (a SIGKILLed provisioner's pool) is test_docker_pool_lifeline.py's."""

from __future__ import annotations

import json
from pathlib import Path

import aiodocker
import msgspec
import pytest

from contracts.status import MachineStatus
from core.poolwire import POOL_UP_LOG
from fleet.client import FleetClient
from providers.docker_names import LABEL_MACHINE, LABEL_POOL, LABEL_STACK, POOL_PREFIX
from providers.docker_pool import DockerPoolBackend
from providers.registry import docker_provider, stack_id
from providers.warm_pool import WarmPool
from services.common.crypto import SecretBox
from services.common.settings import Settings
from services.common.store import Store
from tests.docker_env import (
    docker_gateway,
    docker_image,
    docker_json,
    home_volume,
    inspect,
    nats_server,
    remove_containers,
)
from tests.integration.test_pipeline import PIPELINE, follow
from tests.integration.test_warm_pool import PROCS_PY
from tests.waiters import wait_until

__all__ = ["docker_gateway", "docker_image", "nats_server", "remove_containers"]
pytestmark = pytest.mark.usefixtures("remove_containers")


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, warm_pool="docker=1", warm_pool_min_available_mb=0)


async def up_slots(settings: Settings) -> set[str]:
    """This stack's unclaimed pooled containers whose daemon waits (said so on the log)."""
    filters = {"label": [LABEL_POOL, f"{LABEL_STACK}={stack_id(settings)}"]}
    slots = set()
    async with aiodocker.Docker() as docker:
        for c in await docker.containers.list(filters=filters):
            slot, name = c["Labels"][LABEL_POOL], c["Names"][0]
            if not name.startswith(f"/{POOL_PREFIX}"):
                continue  # claimed
            if POOL_UP_LOG in "".join(await c.log(stdout=True, stderr=True)):
                slots.add(slot)
    return slots


async def pooled(settings: Settings, besides: frozenset[str] = frozenset()) -> str:
    async def found() -> bool:
        return bool(await up_slots(settings) - besides)

    await wait_until(found, timeout=60, every=0.1)
    return sorted(await up_slots(settings) - besides)[0]


async def ready_machine(stack: FleetClient, instance_id: str) -> tuple[str, list[str]]:
    machine = await stack.create_machine(instance_id, "docker")
    kinds = await follow(stack, machine.id, timeout=90)
    got = await stack.get_machine(machine.id)
    assert got.status is MachineStatus.READY, got.status_reason
    return machine.id, kinds


async def inside(stack: FleetClient, machine_id: str, script: str) -> str:
    result = await stack.exec(machine_id, ["python3", "-c", script], timeout_s=30)
    assert result.exit_code == 0, result.stderr
    return result.stdout


async def test_a_claim_is_truthful_and_carries_nothing_of_another_instance(
    stack: FleetClient, settings: Settings, store: Store
) -> None:
    slot = await pooled(settings)
    first = await stack.create_instance("first")
    await stack.set_env("FIRST_SECRET", "first-only-value", first.id)
    await stack.set_limits(first.id, pids=77)
    a, kinds = await ready_machine(stack, first.id)
    assert kinds == PIPELINE  # a cold machine's events, in the same order
    info = await inspect(a)
    assert info["Name"] == f"/fleet-{a}"  # renamed at the claim: found by its machine's name
    assert info["Config"]["Labels"][LABEL_POOL] == slot
    assert LABEL_MACHINE not in info["Config"]["Labels"]
    host = info["HostConfig"]
    assert (host["CapDrop"], host["ReadonlyRootfs"], host["Privileged"]) == (["ALL"], True, False)
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["NetworkMode"] == settings.docker_network
    assert host["PidsLimit"] == 77  # the instance's own, written at the claim
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    sealed = await store.machine_secret(a)
    assert sealed is not None
    token_a = SecretBox(settings.secret_key).decrypt(sealed)
    assert token_a not in json.dumps(info)  # not in its env, args, labels: nowhere
    assert a not in json.dumps(info["Config"]["Env"])
    assert info["Config"]["StdinOnce"]  # the identity's way in closed when the claim detached
    await inside(stack, a, "open('first-file', 'w').write('first')")
    await stack.start_process(a, ["sleep", "4242.5"], tag="first-proc")

    await pooled(settings, frozenset({slot}))  # used once: the refill is another container
    second = await stack.create_instance("second")
    b, kinds = await ready_machine(stack, second.id)
    assert kinds == PIPELINE
    assert (await inspect(b))["Config"]["Labels"][LABEL_POOL] != slot
    env = await inside(stack, b, "import os; print(dict(os.environ))")
    assert "first-only-value" not in env
    assert "FLEET_POOL" not in env
    listing = await inside(stack, b, "import os; print(os.listdir(os.path.expanduser('~')))")
    assert "first-file" not in listing
    dotenv = await inside(stack, b, "print(open('.fleet/.env').read())")
    assert "first-only-value" not in dotenv
    seen = await inside(stack, b, PROCS_PY)
    assert "4242.5" not in seen  # no process of the first machine
    assert token_a not in seen
    assert a not in seen

    await stack.archive_machine(a)  # its container and the pool's volume it had both go

    async def gone() -> bool:
        async with aiodocker.Docker() as docker:
            vols = await docker.volumes.list(filters={"label": [f"{LABEL_POOL}={slot}"]})  # type: ignore[no-untyped-call]
        return await inspect(a) is None and not vols["Volumes"]

    await wait_until(gone, timeout=15, every=0.2)


async def test_a_stopped_claimed_container_is_made_again_with_its_home(
    stack: FleetClient, settings: Settings, store: Store
) -> None:
    """`fleet up` stopping stops the stack's containers; the next provisioner's resume makes
    each again, from its name, on the home volume it had: the pool's."""
    await pooled(settings)
    inst = await stack.create_instance("kept")
    mid, _ = await ready_machine(stack, inst.id)
    await inside(stack, mid, "open('kept-file', 'w').write('kept')")
    before = await inspect(mid)
    volume, hostname = home_volume(before), before["Config"]["Hostname"]
    assert hostname.startswith("fleet-p")  # its pool slot's
    sealed = await store.machine_secret(mid)
    assert sealed is not None
    token = SecretBox(settings.secret_key).decrypt(sealed)
    async with docker_provider(settings, Path.cwd()) as provider:
        running = (await stack.get_machine(mid)).external_id
        assert await provider.start(mid, token) == running  # a resume leaves a live one be
        c = await provider.docker.containers.get(f"fleet-{mid}")
        await c.stop(t=1)
        external = await provider.start(mid, token)
    await store.set_external_id(mid, external)
    info = await inspect(mid)
    assert home_volume(info) == volume
    assert info["Config"]["Labels"][LABEL_MACHINE] == mid  # a cold machine's container now
    assert info["Config"]["Hostname"] == hostname  # the same machine to its user

    async def back() -> bool:
        try:
            return (await stack.exec(mid, ["cat", "kept-file"], timeout_s=2)).stdout == "kept"
        except Exception:  # noqa: BLE001 - not connected yet
            return False

    await wait_until(back, timeout=30, every=0.2)


async def test_a_dead_pooled_container_is_replaced(stack: FleetClient, settings: Settings) -> None:
    slot = await pooled(settings)
    async with aiodocker.Docker() as docker:
        c = await docker.containers.get(f"{POOL_PREFIX}{slot}")
        await c.kill()
    fresh = await pooled(settings, frozenset({slot}))

    async def removed() -> bool:
        async with aiodocker.Docker() as docker:
            return not await docker.containers.list(
                all=True, filters={"label": [f"{LABEL_POOL}={slot}"]}
            )

    await wait_until(removed, timeout=15, every=0.2)
    inst = await stack.create_instance("after-death")
    mid, kinds = await ready_machine(stack, inst.id)
    assert kinds == PIPELINE
    assert (await inspect(mid))["Config"]["Labels"][LABEL_POOL] == fresh


class TestEmptyPool:
    @pytest.fixture
    def stack_settings(self, settings: Settings) -> Settings:
        # Memory is always "short": the pool never fills, so every machine starts cold.
        return msgspec.structs.replace(
            settings, warm_pool="docker=1", warm_pool_min_available_mb=10**9
        )

    async def test_an_empty_pool_starts_the_machine_cold(
        self, stack: FleetClient, settings: Settings
    ) -> None:
        inst = await stack.create_instance("cold")
        mid, kinds = await ready_machine(stack, inst.id)
        assert kinds == PIPELINE
        labels = (await inspect(mid))["Config"]["Labels"]
        assert labels[LABEL_MACHINE] == mid
        assert LABEL_POOL not in labels
        assert not await up_slots(settings)


async def inspect_slot(slot: str) -> object:
    async with aiodocker.Docker() as docker:
        return await docker_json(docker, f"containers/{POOL_PREFIX}{slot}/json")


async def test_the_docker_pool_shrinks_under_memory_pressure(settings: Settings) -> None:
    """The generic rule (providers/warm_pool.py) on real containers: memory short, the pooled
    container is removed and none started; memory back, the pool fills again."""
    available = [10.0**6]
    async with docker_provider(settings, Path.cwd()) as provider:
        pool = WarmPool(DockerPoolBackend(provider), 1, min_available_mb=512,
                        memory=lambda: available[0], check_s=0.05)  # fmt: skip
        async with pool:
            await pool.wait_filled()
            (slot,) = await up_slots(settings)
            available[0] = 100.0  # short

            async def shrunk() -> bool:
                return await inspect_slot(slot) is None and not pool.ready

            await wait_until(shrunk, timeout=15, every=0.1)
            available[0] = 10.0**6
            await pool.wait_filled()
            assert await up_slots(settings) - {slot}
        assert not await up_slots(settings)  # the pool's exit removed what it kept
