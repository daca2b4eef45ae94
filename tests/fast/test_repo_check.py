"""repos.add checks the repo before it stores it (environments/repo_check.py, faked here):
a repo or branch git did not find is refused by name and nothing is stored or pushed; a repo
the platform could not ask is stored, with a warning in the answer; the check is given the
credentials the machine's clone will have."""

from __future__ import annotations

import pytest

from contracts.bus.events import ReposChanged
from contracts.errors import BranchNotFound, RepoNotFound
from contracts.models import GitCredentials
from tests.fakes.repo_check import FakeRepoCheck
from tests.fast.conftest import World

method = pytest.mark.gateway_method
URL = "https://git.example/x.git"


def fake(world: World) -> FakeRepoCheck:
    check = world.api.core.repo_check
    assert isinstance(check, FakeRepoCheck)
    return check


def add(instance_id: str, **more: str) -> dict[str, str]:
    return {"instanceId": instance_id, "url": URL, "branch": "main", "path": "x", **more}


def repos_changed(world: World) -> list[ReposChanged]:
    return world.bus.of(ReposChanged)


@method("repos.add")
@pytest.mark.parametrize("error", [RepoNotFound(f"no repository at {URL}"),
                                   BranchNotFound(f"{URL} has no branch 'main'")])  # fmt: skip
async def test_a_repo_or_branch_not_found_is_refused_by_name_and_not_stored(
    world: World, error: RepoNotFound | BranchNotFound
) -> None:  # fmt: skip
    iid = (await world.instance()).id
    fake(world).answers[URL] = error
    with pytest.raises(type(error)) as refused:
        await world.rpc("repos.add", add(iid, token="s3cret"))
    assert refused.value.message == error.message
    assert await world.store.list_repos(iid) == []
    assert await world.store.repo_secret(iid, "x") is None
    assert repos_changed(world) == []


@method("repos.add")
async def test_a_refusal_leaves_the_repo_already_at_that_path(world: World) -> None:
    iid = (await world.instance()).id
    await world.rpc("repos.add", add(iid))
    fake(world).answers[URL] = BranchNotFound("no branch")
    with pytest.raises(BranchNotFound):
        await world.rpc("repos.add", add(iid, branch="nope"))
    assert [r.branch for r in await world.store.list_repos(iid)] == ["main"]


@method("repos.add")
async def test_a_repo_the_platform_could_not_ask_is_added_with_the_warning(world: World) -> None:
    iid = (await world.instance()).id
    fake(world).answers[URL] = "not checked: no answer within 8s"
    answer = await world.rpc("repos.add", add(iid))
    assert answer["warning"] == "not checked: no answer within 8s"
    assert [r.url for r in await world.store.list_repos(iid)] == [URL]
    assert "warning" not in (await world.rpc("repos.list", {"instanceId": iid}))["repos"][0]
    assert len(repos_changed(world)) == 1


@method("repos.add")
async def test_the_check_has_the_clones_credentials(world: World) -> None:
    iid = (await world.instance()).id
    await world.rpc("repos.add", add(iid))
    await world.rpc("repos.add", add(iid, token="s3cret", username="bot"))
    assert fake(world).calls == [
        (URL, "main", None), (URL, "main", GitCredentials(username="bot", token="s3cret"))
    ]  # fmt: skip
