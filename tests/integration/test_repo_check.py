"""repos.add checks the repo with real git before it stores it (environments/repo_check.py):
over HTTP from a real smart-HTTP server (tests/gitserver.py) and from a local path; a missing
repo and a missing branch refused by name, a good repo added, a private repo checked with its
own token and never with anything of the host's, a remote nobody answers added with a
warning; one that then fails to reach a running machine marks it, and its next start goes on
without it."""

from __future__ import annotations

import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from contracts.errors import BranchNotFound, RepoNotFound
from fleet.client import FleetClient
from tests.gitserver import GitHttpServer
from tests.stop_checks import ready_machine
from tests.waiters import wait_until

TOKEN = "repo-check-t0ken"


@pytest.fixture
async def public(tmp_path: Path, bare_repo: Path) -> AsyncIterator[GitHttpServer]:
    root = tmp_path / "public"
    root.mkdir()
    shutil.copytree(bare_repo, root / "app.git")
    async with GitHttpServer(root, None, None) as server:
        yield server


@pytest.fixture
async def private(tmp_path: Path, bare_repo: Path) -> AsyncIterator[GitHttpServer]:
    root = tmp_path / "private"
    root.mkdir()
    shutil.copytree(bare_repo, root / "app.git")
    async with GitHttpServer(root, "x-access-token", TOKEN) as server:
        yield server


async def test_a_missing_repo_is_refused_by_name_and_not_stored(
    stack: FleetClient, public: GitHttpServer, tmp_path: Path
) -> None:  # fmt: skip
    inst = await stack.create_instance("missing-repo")
    for url in (public.url("nope.git"), str(tmp_path / "nope.git")):
        with pytest.raises(RepoNotFound, match="no repository at") as refused:
            await stack.add_repo(inst.id, url, "main", "app")
        assert url in refused.value.message
    assert await stack.list_repos(inst.id) == []


async def test_a_missing_branch_is_refused_by_name_and_not_stored(
    stack: FleetClient, public: GitHttpServer, bare_repo: Path
) -> None:  # fmt: skip
    inst = await stack.create_instance("missing-branch")
    for url in (public.url("app.git"), str(bare_repo)):
        with pytest.raises(BranchNotFound, match="has no branch 'nosuchbranch'"):
            await stack.add_repo(inst.id, url, "nosuchbranch", "app")
    assert await stack.list_repos(inst.id) == []


async def test_a_good_repo_is_added_with_no_warning(
    stack: FleetClient, public: GitHttpServer, bare_repo: Path
) -> None:  # fmt: skip
    inst = await stack.create_instance("good")
    http = await stack.add_repo(inst.id, public.url("app.git"), "feature", "app")
    local = await stack.add_repo(inst.id, str(bare_repo), "main", "local")
    assert (http.warning, local.warning) == (None, None)
    assert sorted(r.path for r in await stack.list_repos(inst.id)) == ["app", "local"]


async def test_a_private_repo_is_checked_with_its_own_token_never_the_hosts(
    stack: FleetClient, private: GitHttpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    # The platform's own git identity holds the repo's password: the check must not use it.
    home = tmp_path / "host-home"
    home.mkdir()
    (home / ".git-credentials").write_text(f"http://x-access-token:{TOKEN}@127.0.0.1:"
                                           f"{private.port}\n")  # fmt: skip
    (home / ".gitconfig").write_text("[credential]\n\thelper = store\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    inst = await stack.create_instance("private")
    url = private.url("app.git")
    with pytest.raises(RepoNotFound, match="needs a token"):
        await stack.add_repo(inst.id, url, "main", "app")
    with pytest.raises(RepoNotFound):
        await stack.add_repo(inst.id, url, "main", "app", token="not-the-token")
    assert await stack.list_repos(inst.id) == []
    repo = await stack.add_repo(inst.id, url, "feature", "app", token=TOKEN)
    assert (repo.has_credentials, repo.warning) == (True, None)


def closed_port() -> int:
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_remote_nobody_answers_is_added_with_a_warning(stack: FleetClient) -> None:
    port = closed_port()
    inst = await stack.create_instance("unreachable")
    url = f"http://127.0.0.1:{port}/app.git"
    repo = await stack.add_repo(inst.id, url, "main", "app")
    assert repo.warning is not None
    assert repo.warning.startswith(f"not checked: the platform could not ask {url}")
    assert "connect" in repo.warning.lower()  # git's own words: why it could not
    assert [r.url for r in await stack.list_repos(inst.id)] == [url]


async def test_a_repo_that_cannot_reach_a_running_machine_marks_it_and_its_start_goes_on(
    stack: FleetClient, bare_repo: Path
) -> None:  # fmt: skip
    mid = await ready_machine(stack, "warned")
    inst = (await stack.get_machine(mid)).instance_id
    url = f"http://127.0.0.1:{closed_port()}/app.git"
    await stack.add_repo(inst, url, "main", "broken")
    await stack.add_repo(inst, str(bare_repo), "main", "good")

    async def warned() -> bool:
        return (await stack.get_machine(mid)).setup_warning is not None

    await wait_until(warned, timeout=60)
    machine = await stack.get_machine(mid)
    assert machine.status.value == "ready"
    assert (machine.setup_warning or "").startswith(f"repo broken: git clone {url} failed")
    await stack.stop_machine(mid)
    await stack.wait_for(mid, ("stopped",), timeout_s=60)
    await stack.start_machine(mid)
    again = await stack.wait_for(mid, ("ready", "failed"), timeout_s=120)
    assert again.status.value == "ready", again.status_reason
    assert (again.setup_warning or "").startswith("repo broken: ")
    listed = await stack.exec(mid, ["ls", "good"])
    assert listed.exit_code == 0, listed.stderr
