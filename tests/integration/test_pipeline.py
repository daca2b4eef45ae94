"""The whole pipeline, services wired as in production (in this process), real daemons."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import stat
import sys
from pathlib import Path

import dotenv
import msgspec
import pytest

from contracts.bus.events import DaemonStatusReported, MachineFailed, MachineReady, kind_of
from contracts.errors import Conflict, NotFound
from contracts.status import MachineStatus
from controlplane.bus import Bus
from controlplane.settings import Settings
from controlplane.store import Store
from fleet.client import FleetClient
from providers.local.processes import running_pid
from tests.conftest import ADMIN_TOKEN
from tests.gitcmd import git
from tests.waiters import wait_until

PIPELINE = ["created", "provisioned", "daemon-status-reported", "setup-pushed", "ready"]
NASTY = 'first line with "double" quotes, $HOME `id` $(id)\nsecond # not a comment \\n\n'


def home_of(settings: Settings, machine_id: str) -> Path:
    return settings.data_path / "machines" / machine_id / "home"


#: Events of a live change to the instance (an env var set, a repo added) that a machine may
#: get at any moment of its setup, under load after the stage that already had it: not stages.
LIVE_CHANGES = frozenset({"env-pushed", "repos-reconciled"})


async def follow(client: FleetClient, machine_id: str, timeout: float = 30.0) -> list[str]:
    """The machine's stage event kinds, in stream order, up to ready or failed."""
    kinds: list[str] = []
    async with asyncio.timeout(timeout):
        async with contextlib.aclosing(client.events(machine_id)) as events:
            async for _, event in events:
                if (kind := kind_of(event).value) not in LIVE_CHANGES:
                    kinds.append(kind)
                if isinstance(event, MachineReady | MachineFailed):
                    return kinds
    return kinds


async def test_machine_becomes_ready_with_env_and_repo(
    stack: FleetClient, settings: Settings, bare_repo: Path
) -> None:
    inst = await stack.create_instance("demo")
    await stack.set_env("GREETING", "from the platform")
    await stack.set_env("ONLY_PLATFORM", "p")
    await stack.set_env("GREETING", "from the instance", inst.id)
    await stack.set_env("NASTY", NASTY, inst.id)
    await stack.add_repo(inst.id, str(bare_repo), "feature", "src/app")

    machine = await stack.create_machine(inst.id)
    assert machine.status is MachineStatus.CREATED
    assert await follow(stack, machine.id) == PIPELINE

    machine = await stack.get_machine(machine.id)
    assert machine.status is MachineStatus.READY, machine.status_reason
    assert machine.external_id
    assert machine.external_id.startswith("local:")
    assert machine.daemon_version == "0.1.0"

    env_file = home_of(settings, machine.id) / ".fleet" / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    parsed = dotenv.dotenv_values(stream=io.StringIO(env_file.read_text()), interpolate=False)
    assert parsed == {"GREETING": "from the instance", "ONLY_PLATFORM": "p", "NASTY": NASTY}
    sourced = await stack.exec(
        machine.id, ["sh", "-c", 'set -a; . .fleet/.env; printf %s "$NASTY"']
    )
    assert (sourced.stdout, sourced.stderr) == (NASTY, "")  # sh reads the same, runs nothing

    checkout = home_of(settings, machine.id) / "src" / "app"
    result = await stack.exec(machine.id, ["git", "branch", "--show-current"], cwd="src/app")
    assert result.stdout.strip() == "feature"
    assert (checkout / "feature.txt").read_text() == "on feature\n"


async def test_a_repo_the_machine_cannot_clone_is_its_warning_with_gits_message(
    stack: FleetClient, bare_repo: Path
) -> None:
    """A new machine whose repo cannot be cloned is ready without it, as a running one is
    (test_repo_check.py): the setup-pushed event names it, the machine's warning says why."""
    inst = await stack.create_instance("bad")
    # repos.add refuses a missing repo (test_repo_check.py): this one goes after it is added.
    await stack.add_repo(inst.id, str(bare_repo), "main", "app")
    shutil.rmtree(bare_repo)
    machine = await stack.create_machine(inst.id)
    kinds = await follow(stack, machine.id)
    assert kinds == ["created", "provisioned", "daemon-status-reported", "setup-pushed", "ready"]
    machine = await stack.get_machine(machine.id)
    assert machine.status is MachineStatus.READY
    warning = machine.setup_warning or ""
    assert warning.startswith(f"repo app: git clone {bare_repo} failed")
    assert "does not exist" in warning  # git's own words
    assert (await stack.exec(machine.id, ["true"])).exit_code == 0  # a working machine


async def test_the_cli_wait_names_a_repo_not_cloned_and_exits_0(
    stack: FleetClient, settings: Settings, bare_repo: Path
) -> None:
    """``fleet machines create --wait``: the setup-pushed line names the repo not cloned, and
    the machine's warning follows on stderr; the machine works, so the exit code is 0."""
    inst = await stack.create_instance("cli-warned")
    await stack.add_repo(inst.id, str(bare_repo), "main", "app")
    shutil.rmtree(bare_repo)
    env = {**os.environ, "FLEET_URL": f"http://127.0.0.1:{settings.port}",
           "FLEET_TOKEN": ADMIN_TOKEN}  # fmt: skip
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fleet", "machines", "create", "--instance", inst.id, "--wait",
        "--timeout", "60", env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(cli.communicate(), 90)
    assert cli.returncode == 0, err
    (pushed,) = [line for line in out.decode().splitlines() if "setup-pushed" in line]
    assert f"0 repo(s); not cloned: app: git clone {bare_repo} failed" in pushed
    assert "is ready, with a warning: repo app: git clone" in err.decode()


async def test_wrong_branch_is_the_machines_warning_with_gits_message(
    stack: FleetClient, bare_repo: Path
) -> None:  # fmt: skip
    inst = await stack.create_instance("branchless")
    # repos.add refuses a missing branch (test_repo_check.py): this one goes after it is added.
    await stack.add_repo(inst.id, str(bare_repo), "feature", "app")
    git("-C", str(bare_repo), "branch", "-D", "feature")
    machine = await stack.create_machine(inst.id)
    await follow(stack, machine.id)
    machine = await stack.get_machine(machine.id)
    assert machine.status is MachineStatus.READY
    assert "feature" in (machine.setup_warning or "")


async def test_archive_stops_the_daemon_and_rebuild_replaces_it(
    stack: FleetClient, settings: Settings
) -> None:
    inst = await stack.create_instance("rebuild")
    first = await stack.create_machine(inst.id)
    await follow(stack, first.id)
    with pytest.raises(Conflict, match=r"use machines\.rebuild"):
        await stack.create_machine(inst.id)

    second = await stack.rebuild_machine(inst.id)
    assert second.id != first.id
    await follow(stack, second.id)
    assert (await stack.get_machine(second.id)).status is MachineStatus.READY
    archived = await stack.wait_for(first.id, [MachineStatus.ARCHIVED], 30)
    assert archived.status is MachineStatus.ARCHIVED  # its files removed by the provisioner
    assert (await stack.get_instance(inst.id)).current_machine_id == second.id

    machine_dir = settings.data_path / "machines" / first.id
    await wait_until(lambda: running_pid(machine_dir, first.id) is None, timeout=15)
    with pytest.raises(Conflict, match="archived"):
        await stack.exec(first.id, ["true"])

    archiving = await stack.archive_machine(second.id)
    assert archiving.status is MachineStatus.ARCHIVING
    again = await stack.archive_machine(second.id)  # idempotent
    assert again.status in (MachineStatus.ARCHIVING, MachineStatus.ARCHIVED)
    await stack.wait_for(second.id, [MachineStatus.ARCHIVED], 30)


async def test_write_and_exec_through_the_gateway(stack: FleetClient, settings: Settings) -> None:
    inst = await stack.create_instance("tools")
    machine = await stack.create_machine(inst.id)
    await follow(stack, machine.id)
    written = await stack.write_file(machine.id, "notes/todo.txt", "ship it\n", 0o600)
    assert written.path == str(home_of(settings, machine.id) / "notes" / "todo.txt")
    r = await stack.exec(machine.id, ["cat", "notes/todo.txt"])
    assert (r.exit_code, r.stdout) == (0, "ship it\n")
    r = await stack.exec(machine.id, ["sleep", "5"], timeout_s=0.3)
    assert r.timed_out


async def test_redelivered_ready_report_changes_nothing(
    stack: FleetClient, settings: Settings, bare_repo: Path
) -> None:
    """A second ready report for a ready machine neither re-clones nor moves its status."""
    inst = await stack.create_instance("replay")
    await stack.add_repo(inst.id, str(bare_repo), "main", "app")
    machine = await stack.create_machine(inst.id)
    await follow(stack, machine.id)
    marker = home_of(settings, machine.id) / "app" / "local-change.txt"
    marker.write_text("must survive")

    report = None
    async with contextlib.aclosing(stack.events(machine.id)) as events:
        async for _, event in events:
            if isinstance(event, DaemonStatusReported):
                report = event
                break
    assert report is not None
    async with Bus(settings, name="replayer") as bus:
        await bus.publish(msgspec.structs.replace(report, event_id="replayed-" + report.event_id))

        # The stream holds the replay; wait until the setup pusher has consumed it.
        async def consumed() -> bool:
            info = await bus.js.consumer_info("FLEET_MACHINE_EVENTS", "setup_pusher")
            return (info.num_pending, info.num_ack_pending) == (0, 0)

        await wait_until(consumed)
    assert (await stack.get_machine(machine.id)).status is MachineStatus.READY
    assert marker.read_text() == "must survive"


async def test_events_arrive_for_one_machine_only(stack: FleetClient) -> None:
    a = await stack.create_instance("a")
    b = await stack.create_instance("b")
    ma = await stack.create_machine(a.id)
    mb = await stack.create_machine(b.id)
    await follow(stack, ma.id)
    seen: set[str] = set()
    async with contextlib.aclosing(stack.events(mb.id)) as events:
        async for seq, event in events:
            assert seq > 0
            seen.add(event.machine_id)
            if isinstance(event, MachineReady | MachineFailed):
                break
    assert seen == {mb.id}


async def test_unknown_ids_are_not_found(stack: FleetClient) -> None:
    with pytest.raises(NotFound):
        await stack.get_machine("m-0000000000000000")
    with pytest.raises(NotFound):
        await stack.create_machine("i-0000000000000000")
    with pytest.raises(NotFound):
        await stack.set_env("X", "1", "i-0000000000000000")


async def test_a_machine_that_failed_runs_on_its_host_until_it_is_archived(
    stack: FleetClient, store: Store, settings: Settings
) -> None:
    """A machine that failed at setup (a value stored before the .env's rules: refused when
    pushed) still runs: its daemon answers, and its host counts it as running until it is
    archived, as the console's Hosts page shows."""
    inst = await stack.create_instance("fails-at-setup")
    await store.set_env(inst.id, "HOSTILE", "it's $(id)")
    machine = await stack.create_machine(inst.id)
    kinds = await follow(stack, machine.id)
    assert kinds[-1] == "failed"
    assert (await stack.exec(machine.id, ["true"])).exit_code == 0  # it runs on

    async def running() -> int:
        (host,) = [h for h in await stack.list_hosts() if h.host_id == settings.host_id]
        return host.running

    assert await running() == 1
    await stack.archive_machine(machine.id)
    await stack.wait_for(machine.id, [MachineStatus.ARCHIVED], 30)
    assert await running() == 0
