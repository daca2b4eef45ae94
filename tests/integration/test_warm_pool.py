"""The local warm pool with real sandboxed daemons, NATS and valkey: claims are truthful,
used once, carry nothing of another instance; an empty pool starts cold; a dead pooled
machine is replaced; from inside a claimed machine nothing of the pool is reachable."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import msgspec
import pytest

from contracts.status import MachineStatus
from core import procinfo
from core.poolwire import POOL_SLOT_VAR
from fleet.client import FleetClient
from providers import cgroup
from providers.cgroup import MachineCgroup
from providers.local import POOL_SLOT_FILE
from providers.local_pool import UP_MARKER
from providers.netns import NETNS_OF
from providers.sandbox import sandbox_root_children, supervisor_pid
from services.common.crypto import SecretBox
from services.common.settings import Settings
from services.common.store import Store
from tests.integration.test_pipeline import PIPELINE, follow
from tests.waiters import wait_until

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
def stack_settings(settings: Settings) -> Settings:
    return msgspec.structs.replace(settings, warm_pool="local=1", warm_pool_min_available_mb=0)


def up_slots(settings: Settings) -> set[str]:
    """The pooled machines waiting to be claimed."""
    return {p.parent.name for p in (settings.data_path / "pool").glob(f"local/*/*/{UP_MARKER}")}


async def pooled(settings: Settings) -> str:
    """Wait for a pooled machine; its slot."""
    await wait_until(lambda: bool(up_slots(settings)), timeout=30)
    return sorted(up_slots(settings))[0]


def slot_file(settings: Settings, slot: str, name: str) -> Path:
    """A file in a pooled machine's own directory (``pool/local/<owner>/<slot>/``)."""
    (found,) = (settings.data_path / "pool").glob(f"local/*/{slot}/{name}")
    return found


def slot_of(settings: Settings, machine_id: str) -> str | None:
    path = settings.data_path / "machines" / machine_id / POOL_SLOT_FILE
    return path.read_text() if path.exists() else None


async def ready_machine(stack: FleetClient, instance_id: str) -> tuple[str, list[str]]:
    machine = await stack.create_machine(instance_id)
    kinds = await follow(stack, machine.id)
    got = await stack.get_machine(machine.id)
    assert got.status is MachineStatus.READY, got.status_reason
    return machine.id, kinds


async def inside(stack: FleetClient, machine_id: str, script: str) -> str:
    result = await stack.exec(machine_id, ["python3", "-c", script], timeout_s=30)
    assert result.exit_code == 0, result.stderr
    return result.stdout


async def test_a_pooled_machine_goes_through_the_cold_pipeline(
    stack: FleetClient, settings: Settings
) -> None:
    slot = await pooled(settings)
    inst = await stack.create_instance("warm")
    mid, kinds = await ready_machine(stack, inst.id)
    assert slot_of(settings, mid) == slot  # it came from the pool...
    assert kinds == PIPELINE  # ...and its events are a cold machine's, in the same order
    machine = await stack.get_machine(mid)
    assert machine.external_id
    assert machine.external_id.startswith("local:")
    home = settings.data_path / "machines" / mid / "home"
    assert (home / ".fleet" / ".env").exists()  # the setup pusher reached the claimed home
    # Used once: the pool refills with a new machine, never the claimed one.
    await wait_until(lambda: bool(up_slots(settings) - {slot}), timeout=30)
    assert slot not in up_slots(settings)


async def test_a_claim_carries_nothing_of_another_instance(
    stack: FleetClient, settings: Settings, store: Store
) -> None:
    await pooled(settings)
    first = await stack.create_instance("first")
    await stack.set_env("FIRST_SECRET", "first-only-value", first.id)
    a, _ = await ready_machine(stack, first.id)
    await inside(stack, a, "open('/proc/self/cwd/first-file', 'w').write('first')")
    await stack.start_process(a, ["sleep", "4242.5"], tag="first-proc")
    sealed = await store.machine_secret(a)
    assert sealed is not None
    token_a = SecretBox(settings.secret_key).decrypt(sealed)

    await wait_until(lambda: bool(up_slots(settings)), timeout=30)
    second = await stack.create_instance("second")
    b, _ = await ready_machine(stack, second.id)
    assert slot_of(settings, a)
    assert slot_of(settings, b)
    assert slot_of(settings, a) != slot_of(settings, b)

    env = await inside(stack, b, "import os; print(dict(os.environ))")
    assert "FIRST_SECRET" not in env
    assert "first-only-value" not in env
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


async def test_a_dead_pooled_machine_is_replaced(stack: FleetClient, settings: Settings) -> None:
    slot = await pooled(settings)
    root = procinfo.env_roots(POOL_SLOT_VAR, slot)[0]
    supervisor = supervisor_pid(root)
    assert supervisor is not None
    daemons = sandbox_root_children(supervisor)
    assert daemons
    os.kill(daemons[0], signal.SIGKILL)  # the pooled daemon dies: its machine ends with it
    await wait_until(lambda: not procinfo.is_alive(root, None), timeout=15)
    await wait_until(lambda: bool(up_slots(settings) - {slot}), timeout=30)
    assert slot not in up_slots(settings)
    assert not any((settings.data_path / "pool").glob(f"local/*/{slot}"))

    inst = await stack.create_instance("after-death")
    mid, kinds = await ready_machine(stack, inst.id)
    assert kinds == PIPELINE
    assert slot_of(settings, mid) not in (None, slot)


class TestEmptyPool:
    @pytest.fixture
    def stack_settings(self, settings: Settings) -> Settings:
        # Memory is always "short": the pool never fills, so every machine starts cold.
        return msgspec.structs.replace(
            settings, warm_pool="local=1", warm_pool_min_available_mb=10**9
        )

    async def test_an_empty_pool_starts_the_machine_cold(
        self, stack: FleetClient, settings: Settings
    ) -> None:
        inst = await stack.create_instance("cold")
        mid, kinds = await ready_machine(stack, inst.id)
        assert kinds == PIPELINE
        assert slot_of(settings, mid) is None
        assert not up_slots(settings)


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
