"""Live configuration rules: env.set / env.unset reach running machines' .env (and only
theirs), once per change, idempotently."""

from __future__ import annotations

import pytest

from contracts.bus.consumers import Durable
from contracts.bus.events import EnvChanged, EnvPushed, ReposChanged, ReposReconciled
from contracts.errors import Forbidden, InvalidParams
from contracts.status import MachineStatus as S
from services.gateway.auth import Caller
from tests.fakes.daemons import Checkout
from tests.fast.conftest import World


async def test_an_instance_env_change_reaches_only_that_instances_running_machine(
    world: World,
) -> None:
    mine, other = await world.ready_machine(), await world.ready_machine()
    await world.rpc("env.set", {"instanceId": mine.instance_id, "name": "FOO", "value": "bar"})
    await world.bus.settle()
    assert "FOO='bar'" in world.daemons[mine.id].file("~/.fleet/.env").content
    assert "FOO" not in world.daemons[other.id].file("~/.fleet/.env").content
    (changed,) = world.bus.of(EnvChanged)
    assert (changed.instance_id, changed.name) == (mine.instance_id, "FOO")
    pushed = world.bus.one(EnvPushed, mine.id)
    assert pushed.env_bytes == len(world.daemons[mine.id].file("~/.fleet/.env").content)
    assert world.bus.of(EnvPushed, other.id) == []


async def test_a_platform_change_reaches_every_running_machine_and_unset_removes(
    world: World,
) -> None:
    a, b = await world.ready_machine(), await world.ready_machine()
    await world.rpc("env.set", {"name": "REGION", "value": "eu"})
    await world.bus.settle()
    assert all("REGION='eu'" in world.daemons[m.id].file("~/.fleet/.env").content for m in (a, b))
    await world.rpc("env.unset", {"name": "REGION"})
    await world.bus.settle()
    assert all("REGION" not in world.daemons[m.id].file("~/.fleet/.env").content for m in (a, b))
    assert len(world.bus.of(EnvChanged)) == 2


async def test_unsetting_a_missing_name_publishes_nothing(world: World) -> None:
    await world.ready_machine()
    assert (await world.rpc("env.unset", {"name": "NEVER_SET"}))["removed"] is False
    assert world.bus.of(EnvChanged) == []


async def test_a_machine_that_is_not_running_is_not_pushed_to(world: World) -> None:
    machine = await world.ready_machine()
    await world.rpc("machines.archive", {"machineId": machine.id})
    await world.bus.settle()
    writes = len(world.daemons.calls_of("tool.writeFile", machine.id))
    await world.rpc("env.set", {"instanceId": machine.instance_id, "name": "A", "value": "1"})
    await world.bus.settle()
    assert (await world.machine(machine.id)).status is S.ARCHIVED
    assert len(world.daemons.calls_of("tool.writeFile", machine.id)) == writes
    assert world.bus.outcomes(Durable.SETUP_PUSHER_ENV) == ["ok"]


async def test_a_redelivered_change_writes_the_same_env_and_no_second_event(world: World) -> None:
    machine = await world.ready_machine()
    await world.rpc("env.set", {"instanceId": machine.instance_id, "name": "A", "value": "1"})
    await world.bus.settle()
    before = world.daemons[machine.id].file("~/.fleet/.env").content
    await world.bus.redeliver(world.bus.one(EnvChanged), Durable.SETUP_PUSHER_ENV)
    await world.bus.settle()
    assert world.daemons[machine.id].file("~/.fleet/.env").content == before
    assert len(world.bus.of(EnvPushed, machine.id)) == 1
    assert world.bus.duplicates >= 1


async def test_one_unreachable_machine_does_not_stop_the_others(world: World) -> None:
    a, b = await world.ready_machine(), await world.ready_machine()
    world.daemons[a.id].mode = "unavailable"
    await world.rpc("env.set", {"name": "X", "value": "1"})
    await world.bus.settle()
    assert "X='1'" in world.daemons[b.id].file("~/.fleet/.env").content
    assert world.bus.of(EnvPushed, a.id) == []


URL = "https://git.example.com/org/app.git"


async def add_repo(world: World, instance_id: str, branch: str = "main", path: str = "app") -> None:
    await world.rpc("repos.add", {"instanceId": instance_id, "url": URL, "branch": branch,
                                  "path": path})  # fmt: skip
    await world.bus.settle()


async def test_an_added_repo_is_cloned_on_the_running_machine(world: World) -> None:
    machine = await world.ready_machine()
    await add_repo(world, machine.instance_id)
    checkout = world.daemons[machine.id].checkouts[world.daemons[machine.id].path("app")]
    assert (checkout.url, checkout.branch) == (URL, "main")
    done = world.bus.one(ReposReconciled, machine.id)
    assert (done.cloned, done.switched, done.conflicts) == (["app"], [], [])
    # The path is looked at once before its clone, not again inside it.
    assert len(world.daemons[machine.id].ran("rev-parse", "--git-dir")) == 1
    # Idempotent: the same event again clones nothing and reports the repo unchanged.
    await world.bus.redeliver(world.bus.one(ReposChanged), Durable.SETUP_PUSHER_REPOS)
    await world.bus.settle()
    assert len(world.daemons[machine.id].ran("clone")) == 1


async def test_an_unfinished_clone_at_an_added_repos_path_is_a_conflict_not_cloned_over(
    world: World,
) -> None:
    machine = await world.ready_machine()
    fake = world.daemons[machine.id]
    fake.checkouts[fake.path("app")] = Checkout(url=URL, branch="main", finished=False)
    await add_repo(world, machine.instance_id)
    (conflict,) = world.bus.one(ReposReconciled, machine.id).conflicts
    assert conflict.path == "app"
    assert conflict.reason == f"a clone of {URL} into app is still running"
    assert fake.ran("clone") == []
    assert (await world.machine(machine.id)).status is S.READY


async def test_a_branch_change_switches_a_clean_tree_and_reports_a_dirty_one(
    world: World,
) -> None:
    clean, dirty = await world.ready_machine(), await world.ready_machine()
    for m in (clean, dirty):
        await add_repo(world, m.instance_id)
    fake = world.daemons[dirty.id]
    fake.checkouts[fake.path("app")].dirty = True
    for m in (clean, dirty):
        await add_repo(world, m.instance_id, branch="feature")
    c = world.daemons[clean.id]
    assert c.checkouts[c.path("app")].branch == "feature"
    assert world.bus.of(ReposReconciled, clean.id)[-1].switched == ["app"]
    assert fake.checkouts[fake.path("app")].branch == "main"  # left untouched
    (conflict,) = world.bus.of(ReposReconciled, dirty.id)[-1].conflicts
    assert conflict.path == "app"
    assert "uncommitted changes" in conflict.reason
    assert fake.ran("checkout") == []
    # The dirty one is marked with the warning (machines.get), still ready; the clean one not.
    marked = await world.machine(dirty.id)
    assert (marked.status, marked.setup_warning) == (S.READY, f"repo app: {conflict.reason}")
    assert (await world.machine(clean.id)).setup_warning is None
    # Cleaned, the next change switches it, and the warning is gone.
    fake.checkouts[fake.path("app")].dirty = False
    await add_repo(world, dirty.instance_id, branch="next")
    assert (await world.machine(dirty.id)).setup_warning is None


async def test_in_an_image_with_no_git_repos_are_reconciled_by_the_daemons_runtime(
    world: World,
) -> None:
    """``git`` not found: an added repo is cloned by the daemon's runtime, the same event again
    finds it there (asked of the runtime: not cloned again), and a branch change is a conflict
    naming why, the checkout left as it is."""
    machine = await world.ready_machine()
    fake = world.daemons[machine.id]
    fake.on_exec(["git"], exit_code=127, stderr="git: not found")
    await add_repo(world, machine.instance_id)
    assert fake.checkouts[fake.path("app")].url == URL
    assert world.bus.one(ReposReconciled, machine.id).cloned == ["app"]
    await world.bus.redeliver(world.bus.one(ReposChanged), Durable.SETUP_PUSHER_REPOS)
    await world.bus.settle()
    assert len([c for c in fake.git_clones if not c.check_only]) == 1  # found, not cloned
    assert any(c.check_only for c in fake.git_clones)
    await add_repo(world, machine.instance_id, branch="feature")
    (conflict,) = world.bus.of(ReposReconciled, machine.id)[-1].conflicts
    assert "image has no git" in conflict.reason
    assert fake.checkouts[fake.path("app")].branch == "main"


async def test_a_removed_repo_is_left_in_place_and_reported(world: World) -> None:
    machine = await world.ready_machine()
    await add_repo(world, machine.instance_id)
    await world.rpc("repos.remove", {"instanceId": machine.instance_id, "path": "app"})
    await world.bus.settle()
    fake = world.daemons[machine.id]
    assert fake.path("app") in fake.checkouts
    assert world.bus.of(ReposReconciled, machine.id)[-1].left_in_place == ["app"]
    assert (await world.machine(machine.id)).status is S.READY


async def test_a_repo_that_cannot_reach_a_running_machine_is_a_warning_on_it(
    world: World,
) -> None:
    """A clone that fails on a running machine marks it (``setupWarning``), never fails it;
    removing the repo clears the mark."""
    machine = await world.ready_machine()
    world.daemons[machine.id].on_exec(["clone"], exit_code=128,
                                      stderr="fatal: Remote branch nope not found\n")  # fmt: skip
    await add_repo(world, machine.instance_id, branch="nope")
    marked = await world.machine(machine.id)
    assert marked.status is S.READY
    assert marked.setup_warning == (
        f"repo app: git clone {URL} failed: fatal: Remote branch nope not found"
    )
    await world.rpc("repos.remove", {"instanceId": machine.instance_id, "path": "app"})
    await world.bus.settle()
    assert (await world.machine(machine.id)).setup_warning is None


@pytest.mark.gateway_method("machines.execStream")
async def test_exec_stream_answered_once_is_exec(world: World) -> None:
    machine = await world.ready_machine()
    world.daemons[machine.id].on_exec(["echo", "hi"], stdout="hi\n")
    r = await world.rpc("machines.execStream", {"machineId": machine.id, "command": ["echo", "hi"]})
    assert (r["exitCode"], r["stdout"]) == (0, "hi\n")
    (call,) = world.daemons.calls_of("tool.execStream", machine.id)
    assert len(call.params.stream_id) == 32  # type: ignore[attr-defined]
    with pytest.raises(InvalidParams, match="command"):
        await world.rpc("machines.execStream", {"machineId": machine.id, "command": []})
    other = await world.instance("other")
    token = await world.rpc("tokens.create", {"instanceId": other.id, "name": "x"})
    stranger = Caller(token_id=token["id"], admin=False, instance_id=other.id)
    with pytest.raises(Forbidden):
        await world.rpc("machines.execStream", {"machineId": machine.id, "command": ["id"]},
                        caller=stranger)  # fmt: skip


@pytest.mark.gateway_method("machines.daemonLog")
async def test_daemon_log_answers_the_last_lines(world: World) -> None:
    machine = await world.ready_machine()
    world.daemons[machine.id].daemon_log.extend(f"line {n}" for n in range(10))
    r = await world.rpc("machines.daemonLog", {"machineId": machine.id, "lines": 3})
    assert r["lines"] == ["line 7", "line 8", "line 9"]
    with pytest.raises(InvalidParams, match="lines"):
        await world.rpc("machines.daemonLog", {"machineId": machine.id, "lines": 0})
