"""What repos.add makes of git's answer (environments/repo_check.py): git's own words for a
missing repo, a missing branch, and a remote the platform could not ask."""

from __future__ import annotations

import pytest

from contracts.errors import BranchNotFound, RepoNotFound
from environments.repo_check import judge_failure, judge_listing

URL = "https://git.example/team/app.git"
FAILED = "git ls-remote failed: "


@pytest.mark.parametrize("said", [
    f"fatal: repository '{URL}/' not found",
    "remote: Repository not found.\nfatal: repository 'x' not found",
    "fatal: '/srv/nope.git' does not appear to be a git repository\nfatal: Could not read from "
    "remote repository.\n\nPlease make sure you have the correct access rights\nand the "
    "repository exists.",
    f"fatal: could not read Username for '{URL}': terminal prompts disabled",
    f"fatal: Authentication failed for '{URL}/'",
])  # fmt: skip
def test_no_such_repo_or_none_the_credentials_may_read_is_refused(said: str) -> None:
    with pytest.raises(RepoNotFound) as refused:
        judge_failure(URL, FAILED + said)
    assert URL in refused.value.message
    assert refused.value.data == {"url": URL}


@pytest.mark.parametrize("said", [
    f"fatal: unable to access '{URL}/': Could not resolve host: git.example",
    "ssh: Could not resolve hostname git.example: Name or service not known\nfatal: Could not "
    "read from remote repository.\n\nPlease make sure you have the correct access rights\nand "
    "the repository exists.",
    f"fatal: unable to access '{URL}/': Failed to connect to git.example port 443 after 3 ms: "
    "Couldn't connect to server",
    "git@git.example: Permission denied (publickey).\nfatal: Could not read from remote "
    "repository.",
    "something git has never said before",
])  # fmt: skip
def test_a_remote_the_platform_could_not_ask_is_a_warning_naming_why(said: str) -> None:
    warning = judge_failure(URL, FAILED + said)
    assert warning.startswith(f"not checked: the platform could not ask {URL}")


def test_the_repos_own_name_is_no_verdict() -> None:
    url = "https://git.example/timed-out-not-found.git"
    with pytest.raises(RepoNotFound):
        judge_failure(url, f"{FAILED}fatal: repository '{url}/' not found")
    assert judge_failure(url, f"{FAILED}fatal: unable to access '{url}/': Could not resolve host")


def test_the_branch_must_be_listed_by_its_whole_name() -> None:
    judge_listing(URL, "main", "6e69f54c\trefs/heads/main\n")
    for listed in ("", "6e69f54c\trefs/heads/main-old\n", "6e69f54c\trefs/x/refs/heads/main\n"):
        with pytest.raises(BranchNotFound) as refused:
            judge_listing(URL, "main", listed)
        assert refused.value.data == {"url": URL, "branch": "main"}
        assert "'main'" in refused.value.message
