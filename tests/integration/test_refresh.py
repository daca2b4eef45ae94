"""machines.refreshEnv and machines.refreshCode through the whole stack, real daemons."""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import pytest

from base import procinfo
from base.version import SOURCE_ROOT, git_sha
from contracts.bus import subjects
from contracts.bus.events import DaemonStatusReported
from contracts.daemon.machine_files import CODE_SHA_FILE, CronJob
from contracts.errors import NotSupported
from contracts.gateway.rpc import (
    MACHINES_REFRESH_CODE,
    MACHINES_REFRESH_ENV,
    MachineRef,
    RefreshEnvParams,
)
from contracts.status import MachineStatus
from controlplane.bus import Bus
from controlplane.settings import Settings
from fleet.client import FleetClient
from providers.code import DAEMON_TREES
from tests.conftest import git
from tests.integration.test_pipeline import home_of
from tests.waiters import subscribed, wait_until


def env_of(settings: Settings, machine_id: str) -> str:
    return (home_of(settings, machine_id) / ".fleet" / ".env").read_text()


async def ready_machine(stack: FleetClient, name: str) -> str:
    inst = await stack.create_instance(name)
    machine = await stack.create_machine(inst.id)
    await stack.wait_for(machine.id, ["ready"], timeout_s=60)
    return machine.id


async def test_refresh_env_reaches_every_running_machine(
    stack: FleetClient, settings: Settings
) -> None:
    await stack.set_env("RELEASE", "1")
    ids = [await ready_machine(stack, f"i{n}") for n in range(3)]
    assert all("RELEASE='1'" in env_of(settings, m) for m in ids)
    first = (await stack.get_machine(ids[0])).instance_id
    tick = CronJob(name="tick", schedule="*/5 * * * *", command=["true"])
    pushed = await stack.set_cron(first, [tick])
    assert (pushed.machines, pushed.failed) == (1, [])
    cron = (home_of(settings, ids[0]) / ".fleet" / "cron.json").read_text()
    assert '"name":"tick"' in cron
    assert '"jobs":[]' in (home_of(settings, ids[1]) / ".fleet" / "cron.json").read_text()

    await stack.set_env("RELEASE", "2")
    only = await stack.call(MACHINES_REFRESH_ENV, RefreshEnvParams(instance_id=first))
    assert (only.machines, only.written, only.failed) == (1, 1, [])
    assert "RELEASE='2'" in env_of(settings, ids[0])
    assert "RELEASE='1'" in env_of(settings, ids[1])

    everything = await stack.refresh_env()
    assert (everything.machines, everything.written, everything.failed) == (3, 3, [])
    assert all("RELEASE='2'" in env_of(settings, m) for m in ids)


def code_repo(tmp_path: Path) -> tuple[Path, str]:
    """The platform's code repo, one commit ahead of the code the tests' daemons run: a clone
    of this checkout whose new commit (a child of its HEAD) holds the working tree's daemon
    code, so that a daemon of HEAD is *behind* it by git ancestry."""
    repo = tmp_path / "code-repo"
    git("clone", "-q", "--shared", "--no-checkout", str(SOURCE_ROOT), str(repo))
    head = git_sha()
    assert head is not None
    git("checkout", "-q", "--detach", head, cwd=repo)
    for tree in DAEMON_TREES:
        shutil.rmtree(repo / tree, ignore_errors=True)
        shutil.copytree(SOURCE_ROOT / tree, repo / tree,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    git("add", "-A", "--", *DAEMON_TREES, cwd=repo)
    git("commit", "-q", "--allow-empty", "-m", "new daemon code", cwd=repo)
    sha = git("rev-parse", "HEAD", cwd=repo)
    return repo, sha


@pytest.fixture
def new_code(tmp_path: Path) -> tuple[Path, str]:
    return code_repo(tmp_path)


@pytest.fixture
def stack_settings(settings: Settings, new_code: tuple[Path, str]) -> Settings:
    return msgspec.structs.replace(settings, code_repo=str(new_code[0]), git_sha="")


async def test_refresh_code_moves_a_machine_to_the_new_version_keeping_processes(
    stack: FleetClient, settings: Settings, bus: Bus, new_code: tuple[Path, str]
) -> None:
    _, sha = new_code
    mid = await ready_machine(stack, "code")
    machine = await stack.get_machine(mid)
    assert machine.daemon_git_sha == git_sha()
    assert (machine.code_status, machine.update_available) == ("behind", True)
    started = await stack.machine(mid).start_process(["sleep", "300"], tag="keepme")
    daemon_pid = int((machine.external_id or "").removeprefix("local:"))

    subject = subjects.event(subjects.EventKind.DAEMON_STATUS_REPORTED, mid)
    async with subscribed(bus.nc, subject) as inbox:
        done = await stack.call(MACHINES_REFRESH_CODE, MachineRef(machine_id=mid))
        assert done.restarting
        assert (done.from_git_sha, done.to_git_sha) == (git_sha(), sha)
        going = await inbox.next_event(timeout=15)
        back = await inbox.next_event(timeout=30)
    assert isinstance(going, DaemonStatusReported)
    assert isinstance(back, DaemonStatusReported)
    assert (going.status, going.git_sha) == ("stopping", git_sha())
    assert (back.status, back.git_sha) == ("ready", sha)
    assert back.boot_id != going.boot_id

    async def updated() -> bool:
        m = await stack.get_machine(mid)
        return m.daemon_git_sha == sha and (m.code_status, m.update_available) == ("current", False)

    await wait_until(updated, timeout=15)
    assert (await stack.get_machine(mid)).status is MachineStatus.READY
    store = settings.data_path / "machines" / mid / "code"  # beside the home, not in it
    assert (store / sha / CODE_SHA_FILE).read_text().strip() == sha
    assert not (home_of(settings, mid) / ".fleet" / "code").exists()
    assert procinfo.is_alive(daemon_pid, None)  # restarted in place: the same pid
    listed = await stack.machine(mid).processes()
    assert [(p.pid, p.state) for p in listed] == [(started.pid, "running")]

    again = await stack.refresh_code(mid)
    assert not again.restarting  # already there


async def test_refresh_code_on_a_swarm_machine_is_not_supported(stack: FleetClient) -> None:
    inst = await stack.create_instance("swarm")
    machine = await stack.create_machine(inst.id, provider="swarm")
    await stack.wait_for(machine.id, ["ready"], timeout_s=60)
    with pytest.raises(NotSupported, match="swarm"):
        await stack.refresh_code(machine.id)
