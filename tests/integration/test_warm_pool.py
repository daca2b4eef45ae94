"""The warm pool of each provider (``local``, ``docker``) with real daemons, NATS and valkey (a
real engine and the real machine image for ``docker``): a claim goes through the cold pipeline,
is used once and carries nothing of another instance; an empty pool starts cold; a dead pooled
machine is replaced. What only one provider has is checked in its cases: from inside a claimed
local machine nothing of the pool is reachable, a local claim keeps its slot's uid, a local pool
ends with its provisioner; no token is where ``docker inspect`` shows it, a claimed container
stopped (``fleet up`` stopping) is made again with its home, a docker pool shrinks under memory
pressure. Few docker cases, each with a pool of one: every container start costs CPU the suite
shares. The docker pool's lifeline (a SIGKILLed provisioner's pool) is
test_docker_pool_lifeline.py's."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import aiodocker
import msgspec
import pytest

from base import procinfo
from base.poolwire import POOL_SLOT_VAR, POOL_UP_LOG
from contracts.status import MachineStatus
from controlplane.security.crypto import SecretBox
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from providers.docker import LABEL_MACHINE, LABEL_POOL, LABEL_STACK, POOL_PREFIX, DockerPoolBackend
from providers.local import POOL_SLOT_FILE, UP_MARKER
from providers.registry import docker_provider, stack_id
from providers.sandbox import NETNS_OF, MachineCgroup, cgroup, sandbox_root_children, supervisor_pid
from providers.warm_pool import WarmPool
from tests.docker_env import (
    docker_gateway,
    docker_image,
    docker_json,
    home_volume,
    inspect,
    remove_containers,
)
from tests.integration.test_pipeline import PIPELINE, follow
from tests.provider_param import nats_server, provider
from tests.waiters import wait_until

__all__ = ["docker_gateway", "docker_image", "nats_server", "provider", "remove_containers"]
LOCAL = pytest.mark.parametrize("provider", ["local"])
DOCKER = pytest.mark.parametrize("provider", ["docker"])

#: Inside a machine: every process's pid, command line and environment, as JSON.
PROCS_PY = """
import json, os
out = []
for p in os.listdir('/proc'):
    if p.isdigit():
        try:
            env = open(f'/proc/{p}/environ', 'rb').read().decode(errors='replace')
            cmd = open(f'/proc/{p}/cmdline', 'rb').read().decode(errors='replace')
            fds = [os.readlink(f'/proc/{p}/fd/{f}') for f in os.listdir(f'/proc/{p}/fd')]
        except OSError:
            continue
        out.append({'pid': int(p), 'env': env, 'cmd': cmd, 'fds': fds})
print(json.dumps(out))
"""


@pytest.fixture
def stack_settings(settings: Settings, provider: str) -> Settings:
    return msgspec.structs.replace(
        settings, warm_pool=f"{provider}=1", warm_pool_min_available_mb=0
    )


def up_slots(settings: Settings) -> set[str]:
    """The local pooled machines waiting to be claimed."""
    return {p.parent.name for p in (settings.data_path / "pool").glob(f"local/*/*/{UP_MARKER}")}


async def pooled(settings: Settings) -> str:
    """Wait for a local pooled machine; its slot."""
    await wait_until(lambda: bool(up_slots(settings)), timeout=30)
    return sorted(up_slots(settings))[0]


async def docker_up_slots(settings: Settings) -> set[str]:
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


async def slots_up(settings: Settings, provider: str) -> set[str]:
    """The provider's pooled machines waiting to be claimed."""
    return up_slots(settings) if provider == "local" else await docker_up_slots(settings)


async def pooled_on(
    settings: Settings, provider: str, besides: frozenset[str] = frozenset()
) -> str:
    """Wait for a pooled machine of the provider other than ``besides``; its slot."""

    async def found() -> bool:
        return bool(await slots_up(settings, provider) - besides)

    await wait_until(found, timeout=60, every=0.1)
    return sorted(await slots_up(settings, provider) - besides)[0]


async def docker_pooled(settings: Settings, besides: frozenset[str] = frozenset()) -> str:
    """Wait for a pooled container other than ``besides``; its slot."""
    return await pooled_on(settings, "docker", besides)


def slot_file(settings: Settings, slot: str, name: str) -> Path:
    """A file in a pooled machine's own directory (``pool/local/<owner>/<slot>/``)."""
    (found,) = (settings.data_path / "pool").glob(f"local/*/{slot}/{name}")
    return found


def slot_of(settings: Settings, machine_id: str) -> str | None:
    """The pool slot a local machine was claimed from, if it was."""
    path = settings.data_path / "machines" / machine_id / POOL_SLOT_FILE
    return path.read_text() if path.exists() else None


async def claimed_slot(settings: Settings, provider: str, machine_id: str) -> str | None:
    """The pool slot a machine was claimed from, if it was: a local machine's slot file, a
    container's pool label."""
    if provider == "local":
        return slot_of(settings, machine_id)
    labels: dict[str, str] = (await inspect(machine_id))["Config"]["Labels"]
    return labels.get(LABEL_POOL)


async def ready_machine(
    stack: FleetClient, instance_id: str, provider: str = "local"
) -> tuple[str, list[str]]:
    machine = await stack.create_machine(instance_id, provider)  # type: ignore[arg-type]
    kinds = await follow(stack, machine.id, timeout=90)
    got = await stack.get_machine(machine.id)
    assert got.status is MachineStatus.READY, got.status_reason
    return machine.id, kinds


async def inside(stack: FleetClient, machine_id: str, script: str) -> str:
    result = await stack.exec(machine_id, ["python3", "-c", script], timeout_s=30)
    assert result.exit_code == 0, result.stderr
    return result.stdout


async def local_claim_is_truthful(
    stack: FleetClient, settings: Settings, mid: str, slot: str, token: str
) -> None:
    """A claimed local machine: the provider's id, and its setup in the claimed home."""
    machine = await stack.get_machine(mid)
    assert machine.external_id
    assert machine.external_id.startswith("local:")
    home = settings.data_path / "machines" / mid / "home"
    assert (home / ".fleet" / ".env").exists()  # the setup pusher reached the claimed home


async def docker_claim_is_truthful(
    stack: FleetClient, settings: Settings, mid: str, slot: str, token: str
) -> None:
    """A claimed container: renamed, confined as a cold one, the instance's limits, and no
    token where ``docker inspect`` shows it."""
    info = await inspect(mid)
    assert info["Name"] == f"/fleet-{mid}"  # renamed at the claim: found by its machine's name
    assert info["Config"]["Labels"][LABEL_POOL] == slot
    assert LABEL_MACHINE not in info["Config"]["Labels"]
    host = info["HostConfig"]
    assert (host["CapDrop"], host["ReadonlyRootfs"], host["Privileged"]) == (["ALL"], True, False)
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["NetworkMode"] == settings.docker_network
    assert host["PidsLimit"] == 77  # the instance's own, written at the claim
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert token not in json.dumps(info)  # not in its env, args, labels: nowhere
    assert mid not in json.dumps(info["Config"]["Env"])
    assert info["Config"]["StdinOnce"]  # the identity's way in closed when the claim detached


async def docker_archive_takes_the_slot(stack: FleetClient, mid: str, slot: str) -> None:
    """Archived, a claimed container goes, and the pool's volume it had with it."""
    await stack.archive_machine(mid)

    async def gone() -> bool:
        async with aiodocker.Docker() as docker:
            vols = await docker.volumes.list(filters={"label": [f"{LABEL_POOL}={slot}"]})  # type: ignore[no-untyped-call]
        return await inspect(mid) is None and not vols["Volumes"]

    await wait_until(gone, timeout=15, every=0.2)


async def test_a_claim_is_truthful_used_once_and_carries_nothing_of_another_instance(
    stack: FleetClient, settings: Settings, store: Store, provider: str
) -> None:
    slot = await pooled_on(settings, provider)
    first = await stack.create_instance("first")
    await stack.set_env("FIRST_SECRET", "first-only-value", first.id)
    await stack.set_limits(first.id, pids=77)
    a, kinds = await ready_machine(stack, first.id, provider)
    assert await claimed_slot(settings, provider, a) == slot  # it came from the pool...
    assert kinds == PIPELINE  # ...and its events are a cold machine's, in the same order
    sealed = await store.machine_secret(a)
    assert sealed is not None
    token_a = SecretBox(settings.secret_key).decrypt(sealed)
    truthful = local_claim_is_truthful if provider == "local" else docker_claim_is_truthful
    await truthful(stack, settings, a, slot, token_a)
    await inside(stack, a, "open(__import__('os').path.expanduser('~/first-file'), 'w').write('1')")
    await stack.start_process(a, ["sleep", "4242.5"], tag="first-proc")

    # Used once: the pool refills with a new machine, never the claimed one.
    await pooled_on(settings, provider, frozenset({slot}))
    assert slot not in await slots_up(settings, provider)
    second = await stack.create_instance("second")
    b, kinds = await ready_machine(stack, second.id, provider)
    assert kinds == PIPELINE
    slot_a = await claimed_slot(settings, provider, a)
    slot_b = await claimed_slot(settings, provider, b)
    assert slot_a
    assert slot_b
    assert slot_a != slot_b

    env = await inside(stack, b, "import os; print(dict(os.environ))")
    assert "FIRST_SECRET" not in env
    assert "first-only-value" not in env
    assert "FLEET_POOL" not in env
    listing = await inside(stack, b, "import os; print(os.listdir(os.path.expanduser('~')))")
    assert "first-file" not in listing
    dotenv = await inside(
        stack, b, "print(open(__import__('os').path.expanduser('~/.fleet/.env')).read())"
    )
    assert "first-only-value" not in dotenv
    procs = json.loads(await inside(stack, b, PROCS_PY))
    seen = json.dumps(procs)
    assert "4242.5" not in seen  # no process of the first machine
    assert token_a not in seen
    assert a not in seen
    if provider == "docker":
        await docker_archive_takes_the_slot(stack, a, slot)


@LOCAL
async def test_nothing_of_the_pool_is_reachable_from_a_claimed_machine(
    stack: FleetClient, settings: Settings
) -> None:
    slot = await pooled(settings)
    root = procinfo.env_roots(POOL_SLOT_VAR, slot)[0]
    # The machine's end of the pool socket, as its supervisor holds it while pooled.
    supervisor = supervisor_pid(root)
    assert supervisor is not None
    pool_socket = os.readlink(f"/proc/{supervisor}/fd/3")
    assert pool_socket.startswith("socket:")
    inst = await stack.create_instance("attacker")
    mid, _ = await ready_machine(stack, inst.id)
    assert slot_of(settings, mid) == slot
    await wait_until(lambda: bool(up_slots(settings) - {slot}), timeout=30)
    other = sorted(up_slots(settings) - {slot})[0]

    procs = json.loads(await inside(stack, mid, PROCS_PY))
    for p in procs:
        assert pool_socket not in p["fds"], p  # no process of the machine holds the socket
        assert other not in p["env"] + p["cmd"], p  # no other pooled machine
    # (The sandbox's init and supervisor keep FLEET_POOL_FD=3 and their slot in the environment
    # they were started with: a number and a name, the fd itself is closed. What the daemon
    # gives commands has neither.)
    daemon_env = await inside(stack, mid, "import os; print(sorted(os.environ))")
    assert POOL_SLOT_VAR not in daemon_env
    assert "FLEET_POOL_FD" not in daemon_env
    # Inside, the data dir is an empty tmpfs but for the path to the machine's own home (the
    # pool home it was started with): no other pooled machine's directory is there.
    (owner,) = (settings.data_path / "pool" / "local").iterdir()
    probe = f"import os; print(os.listdir({str(owner)!r}))"
    assert json.loads((await inside(stack, mid, probe)).replace("'", '"')) == [slot]
    assert (owner / other / "home").is_dir()  # (it is there, on the host)


@LOCAL
async def test_a_shared_path_made_after_a_pooled_start_gets_a_cold_machine(
    stack: FleetClient, settings: Settings, request: pytest.FixtureRequest
) -> None:
    """A pooled sandbox binds the FLEET_SANDBOX_SHARE paths that existed when it started: one
    made later (the tests' repo.git here) must not be missing from the machine a user gets."""
    slot = await pooled(settings)
    bare: Path = request.getfixturevalue("bare_repo")  # made only now
    inst = await stack.create_instance("shared")
    await stack.add_repo(inst.id, str(bare), "main", "src/app")
    mid, _ = await ready_machine(stack, inst.id)
    assert slot_of(settings, mid) is None  # started cold, seeing the new path
    assert slot not in up_slots(settings)  # the stale pooled machine was stopped, not kept
    assert (await stack.exec(mid, ["cat", "src/app/README"])).stdout == "main\n"


async def kill_pooled(settings: Settings, provider: str, slot: str) -> None:
    """A pooled machine dies: a local one's daemon (its machine ends with it), a container."""
    if provider == "local":
        root = procinfo.env_roots(POOL_SLOT_VAR, slot)[0]
        supervisor = supervisor_pid(root)
        assert supervisor is not None
        daemons = sandbox_root_children(supervisor)
        assert daemons
        os.kill(daemons[0], signal.SIGKILL)
        await wait_until(lambda: not procinfo.is_alive(root, None), timeout=15)
        return
    async with aiodocker.Docker() as docker:
        c = await docker.containers.get(f"{POOL_PREFIX}{slot}")
        await c.kill()


async def dead_slot_removed(settings: Settings, provider: str, slot: str) -> None:
    """Nothing of a dead pooled machine is kept: its directory, its container."""
    if provider == "local":
        assert not any((settings.data_path / "pool").glob(f"local/*/{slot}"))
        return

    async def removed() -> bool:
        async with aiodocker.Docker() as docker:
            return not await docker.containers.list(
                all=True, filters={"label": [f"{LABEL_POOL}={slot}"]}
            )

    await wait_until(removed, timeout=15, every=0.2)


async def test_a_dead_pooled_machine_is_replaced(
    stack: FleetClient, settings: Settings, provider: str
) -> None:
    slot = await pooled_on(settings, provider)
    await kill_pooled(settings, provider, slot)
    fresh = await pooled_on(settings, provider, frozenset({slot}))
    assert slot not in await slots_up(settings, provider)
    await dead_slot_removed(settings, provider, slot)

    inst = await stack.create_instance("after-death")
    mid, kinds = await ready_machine(stack, inst.id, provider)
    assert kinds == PIPELINE
    claimed = await claimed_slot(settings, provider, mid)
    assert claimed not in (None, slot)
    assert claimed == fresh


class TestEmptyPool:
    @pytest.fixture
    def stack_settings(self, settings: Settings, provider: str) -> Settings:
        # Memory is always "short": the pool never fills, so every machine starts cold.
        return msgspec.structs.replace(
            settings, warm_pool=f"{provider}=1", warm_pool_min_available_mb=10**9
        )

    async def test_an_empty_pool_starts_the_machine_cold(
        self, stack: FleetClient, settings: Settings, provider: str
    ) -> None:
        inst = await stack.create_instance("cold")
        mid, kinds = await ready_machine(stack, inst.id, provider)
        assert kinds == PIPELINE
        assert await claimed_slot(settings, provider, mid) is None
        if provider == "docker":  # a cold machine's container
            assert (await inspect(mid))["Config"]["Labels"][LABEL_MACHINE] == mid
        assert not await slots_up(settings, provider)


@LOCAL
async def test_a_claimed_machine_gets_its_instances_limits_and_keeps_the_slots_uid(
    stack: FleetClient, settings: Settings
) -> None:
    slot = await pooled(settings)
    slot_uid = int(slot_file(settings, slot, "uid").read_text())
    inst = await stack.create_instance("limited")
    await stack.set_limits(inst.id, pids=77)
    mid, _ = await ready_machine(stack, inst.id)
    assert slot_of(settings, mid) == slot
    group = MachineCgroup(slot)
    pids_dir = group.dirs[0] if group.v2 else group.dirs[cgroup.V1_CONTROLLERS.index("pids")]
    assert (pids_dir / "pids.max").read_text().strip() == "77"  # applied live at the claim
    assert int((settings.data_path / "machines" / mid / "uid").read_text()) == slot_uid
    assert not list((settings.data_path / "pool").glob(f"local/*/{slot}"))
    assert not (settings.data_path / "machines" / slot).exists()  # machines/ has machines only
    assert (await stack.exec(mid, ["id", "-u"])).stdout.strip() == str(slot_uid)
    await stack.archive_machine(mid)
    await wait_until(lambda: not any(d.exists() for d in group.dirs), timeout=10)


@LOCAL
async def test_the_pool_ends_with_its_provisioner(settings: Settings) -> None:
    """No leak: a provisioner's exit stops its pooled machines; the next one's start removes
    what a SIGKILLed one left."""
    from contextlib import AsyncExitStack

    from services.provisioner.__main__ import build

    s = msgspec.structs.replace(settings, warm_pool="local=2", warm_pool_min_available_mb=0)
    async with AsyncExitStack() as stack:
        await build(s, stack)
        await wait_until(lambda: len(up_slots(s)) == 2, timeout=30)
        slots = up_slots(s)
        roots = [procinfo.env_roots(POOL_SLOT_VAR, slot)[0] for slot in slots]
        assert all(slot_file(s, slot, "uid").is_file() for slot in slots)
        assert all(d.is_dir() for slot in slots for d in MachineCgroup(slot).dirs)
    assert not any(procinfo.is_alive(r, None) for r in roots)
    # Nothing held for them either: their uids are free again, their cgroups gone.
    assert not list((s.data_path / "pool").glob("local/*/*/uid"))
    assert not any(d.exists() for slot in slots for d in MachineCgroup(slot).dirs)
    assert not list((s.data_path / "pool" / "local").iterdir())
    # What a provisioner that was SIGKILLed leaves: a directory whose owner is gone.
    orphan = s.data_path / "pool" / "local" / "1-1" / "pdeadbeef"
    (orphan / "home").mkdir(parents=True)
    async with AsyncExitStack() as stack:
        await build(s, stack)
        assert not (s.data_path / "pool" / "local" / "1-1").exists()
        # One killed while this one runs, with its slot's pasta (a stand-in process marked as
        # a pasta is): this one's stop removes both, it does not wait for the next start.
        (orphan / "home").mkdir(parents=True)
        stand_in = await asyncio.create_subprocess_exec("sleep", "120", env={NETNS_OF: "pdeadbeef"})
        await wait_until(lambda: bool(procinfo.env_roots(NETNS_OF, "pdeadbeef")), timeout=5)
    assert not (s.data_path / "pool" / "local" / "1-1").exists()
    assert await asyncio.wait_for(stand_in.wait(), 5) == -signal.SIGTERM


@LOCAL
async def test_two_provisioners_keep_a_pool_each(settings: Settings) -> None:
    """As with `fleet up --ha`: each provisioner fills its own pool in its own directory, and
    one's start or stop leaves the other's pooled machines be."""
    from contextlib import AsyncExitStack

    from services.provisioner.__main__ import build

    s = msgspec.structs.replace(settings, warm_pool="local=1", warm_pool_min_available_mb=0)
    async with AsyncExitStack() as first:
        await build(s, first)
        await wait_until(lambda: len(up_slots(s)) == 1, timeout=30)
        (mine,) = up_slots(s)
        async with AsyncExitStack() as second:
            await build(s, second)  # its orphan sweep must not take the first one's machine
            await wait_until(lambda: len(up_slots(s)) == 2, timeout=30)
            assert mine in up_slots(s)
            owners = {p.parent.parent.name for p in (s.data_path / "pool").glob("local/*/*/up")}
            assert len(owners) == 2
        assert up_slots(s) == {mine}  # the second's stop ended only its own


@DOCKER
async def test_a_stopped_claimed_container_is_made_again_with_its_home(
    stack: FleetClient, settings: Settings, store: Store, provider: str
) -> None:
    """`fleet up` stopping stops the stack's containers; the next provisioner's resume makes
    each again, from its name, on the home volume it had: the pool's."""
    await docker_pooled(settings)
    inst = await stack.create_instance("kept")
    mid, _ = await ready_machine(stack, inst.id, provider)
    await inside(stack, mid, "open('kept-file', 'w').write('kept')")
    before = await inspect(mid)
    volume, hostname = home_volume(before), before["Config"]["Hostname"]
    assert hostname.startswith("fleet-p")  # its pool slot's
    sealed = await store.machine_secret(mid)
    assert sealed is not None
    token = SecretBox(settings.secret_key).decrypt(sealed)
    async with docker_provider(settings, Path.cwd()) as dprovider:
        running = (await stack.get_machine(mid)).external_id
        assert await dprovider.start(mid, token) == running  # a resume leaves a live one be
        c = await dprovider.docker.containers.get(f"fleet-{mid}")
        await c.stop(t=1)
        external = await dprovider.start(mid, token)
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


async def inspect_slot(slot: str) -> object:
    async with aiodocker.Docker() as docker:
        return await docker_json(docker, f"containers/{POOL_PREFIX}{slot}/json")


@DOCKER
async def test_the_docker_pool_shrinks_under_memory_pressure(
    settings: Settings, provider: str
) -> None:
    """The generic rule (providers/warm_pool.py) on real containers: memory short, the pooled
    container is removed and none started; memory back, the pool fills again."""
    available = [10.0**6]
    async with docker_provider(settings, Path.cwd()) as dprovider:
        pool = WarmPool(DockerPoolBackend(dprovider), 1, min_available_mb=512,
                        memory=lambda: available[0], check_s=0.05)  # fmt: skip
        async with pool:
            await pool.wait_filled()
            (slot,) = await docker_up_slots(settings)
            available[0] = 100.0  # short

            async def shrunk() -> bool:
                return await inspect_slot(slot) is None and not pool.ready

            await wait_until(shrunk, timeout=15, every=0.1)
            available[0] = 10.0**6
            await pool.wait_filled()
            assert await docker_up_slots(settings) - {slot}
        assert not await docker_up_slots(settings)  # the pool's exit removed what it kept
