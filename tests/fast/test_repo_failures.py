"""A repo that does not reach a machine, by one rule whether the machine is new or running: the
machine goes on without it (ready, usable), marked with the repo's warning (``setupWarning``),
and its setup-pushed event names the repo not cloned. When the instance's network policy
refused the repo's host, the warning says so and gives the command that allows it; repos.add
warns of it at once."""

from __future__ import annotations

import pytest

from contracts.bus.consumers import Durable
from contracts.bus.events import MachineFailed, RepoConflict, ReposReconciled, SetupPushed
from contracts.gateway.network import EgressPolicy
from contracts.models import Repo
from contracts.status import MachineStatus as S
from tests.fast.conftest import World
from tests.fast.test_setup_pusher import booting, report

URL = "https://git.example.com/org/app.git"
NOT_FOUND = "fatal: repository 'https://git.example.com/org/app.git/' not found"
REFUSED_403 = f"fatal: unable to access '{URL}/': CONNECT tunnel failed, response 403"


async def new_machine_with(world: World, stderr: str, policy: EgressPolicy | None = None) -> str:
    """A new machine of an instance with the repo, whose clone fails saying ``stderr``."""
    machine = await booting(world, repos=[Repo(url=URL, branch="main", path="src/app")])
    if policy is not None:
        await world.store.instance_settings.set_egress(machine.instance_id, policy)
    world.daemons[machine.id].on_exec(["clone"], exit_code=128, stderr=stderr + "\n")
    await world.bus.publish(report(machine.id))
    await world.bus.settle()
    return machine.id


async def running_machine_given(world: World, stderr: str,
                                policy: EgressPolicy | None = None) -> str:  # fmt: skip
    """A ready machine whose instance is given the repo, whose clone fails saying ``stderr``."""
    machine = await world.ready_machine()
    if policy is not None:
        await world.store.instance_settings.set_egress(machine.instance_id, policy)
    world.daemons[machine.id].on_exec(["clone"], exit_code=128, stderr=stderr + "\n")
    await world.rpc("repos.add", {"instanceId": machine.instance_id, "url": URL,
                                  "branch": "main", "path": "src/app"})  # fmt: skip
    await world.bus.settle()
    return machine.id


async def test_a_new_machine_whose_repo_cannot_be_cloned_is_ready_and_warned(
    world: World,
) -> None:
    mid = await new_machine_with(world, NOT_FOUND)
    machine = await world.machine(mid)
    assert machine.status is S.READY
    reason = f"git clone {URL} failed: {NOT_FOUND}"
    assert machine.setup_warning == f"repo src/app: {reason}"
    assert world.bus.of(MachineFailed, mid) == []
    assert "gave_up" not in world.bus.outcomes(Durable.SETUP_PUSHER)
    pushed = world.bus.one(SetupPushed, mid)
    assert pushed.repo_paths == []  # the probe looks for no checkout of it
    assert pushed.not_cloned == [RepoConflict(path="src/app", reason=reason)]
    assert await world.store.cloned_paths(mid) == set()


async def test_a_new_machine_and_a_running_one_are_told_the_same(world: World) -> None:
    new = await world.machine(await new_machine_with(world, NOT_FOUND))
    running = await world.machine(await running_machine_given(world, NOT_FOUND))
    assert (new.status, running.status) == (S.READY, S.READY)
    assert new.setup_warning == running.setup_warning is not None


POLICY = EgressPolicy(default="deny", allow=["pypi.org"])


NOT_RESOLVED = f"fatal: unable to access '{URL}/': Could not resolve host: git.example.com"


@pytest.mark.parametrize("said", [REFUSED_403, NOT_RESOLVED])
async def test_a_clone_the_policy_refused_says_so_and_how_to_allow_it(
    world: World, said: str
) -> None:  # fmt: skip
    for mid in (await new_machine_with(world, said, POLICY),
                await running_machine_given(world, said, POLICY)):  # fmt: skip
        machine = await world.machine(mid)
        assert machine.status is S.READY
        warning = machine.setup_warning or ""
        iid = machine.instance_id
        assert warning.startswith(
            f"repo src/app: git clone {URL} failed: the instance's network policy refused "
            "git.example.com:443 (its default is deny and no allow entry names "
            "git.example.com:443); allow it with `fleet instances network "
            f"{iid} --default deny --allow pypi.org --allow git.example.com`"
        ), warning
        assert warning.endswith(f"; git said: {said}")  # git's own words, after ours
    (reconciled,) = world.bus.of(ReposReconciled)
    assert "network policy refused" in reconciled.conflicts[0].reason


async def test_a_clone_that_fails_where_the_policy_allows_keeps_gits_words(world: World) -> None:
    policy = EgressPolicy(default="deny", allow=["*.example.com:443"])
    mid = await new_machine_with(world, NOT_FOUND, policy)
    assert (await world.machine(mid)).setup_warning == (
        f"repo src/app: git clone {URL} failed: {NOT_FOUND}"
    )


@pytest.mark.gateway_method("repos.add")
async def test_repos_add_warns_of_a_host_the_instances_policy_refuses(world: World) -> None:
    iid = (await world.instance()).id
    await world.store.instance_settings.set_egress(
        iid, EgressPolicy(deny=["*.example.com", "10.0.0.0/8"])
    )
    added = await world.rpc("repos.add", {"instanceId": iid, "url": URL, "branch": "main",
                                          "path": "app"})  # fmt: skip
    assert added["warning"] == (
        "its machines cannot clone it: the instance's network policy refuses "
        "git.example.com:443 (its deny entry '*.example.com'); allow it with "
        f"`fleet instances network {iid} --deny 10.0.0.0/8`"
    )
    assert [r.url for r in await world.store.list_repos(iid)] == [URL]  # added all the same
    ok = await world.rpc("repos.add", {"instanceId": iid, "url": "https://pypi.org/x.git",
                                       "branch": "main", "path": "x"})  # fmt: skip
    assert ok["warning"] is None
