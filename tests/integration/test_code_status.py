"""codeStatus from git ancestry in a real repository (controlplane.policy.CodeVersions)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from controlplane.policy import CodeVersions
from tests.conftest import git


def commit(repo: Path, message: str) -> str:
    git("commit", "-q", "--allow-empty", "-m", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


@pytest.fixture
def history(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """base ── old ── platform ── newer, and old ── side (another branch)."""
    repo = tmp_path / "code"
    git("init", "-q", "-b", "main", str(repo))
    shas = {"base": commit(repo, "base"), "old": commit(repo, "old")}
    git("checkout", "-q", "-b", "side", cwd=repo)
    shas["side"] = commit(repo, "side")
    git("checkout", "-q", "main", cwd=repo)
    shas["platform"] = commit(repo, "platform")
    shas["newer"] = commit(repo, "newer")
    return repo, shas


async def test_ancestry_tells_behind_ahead_diverged_and_unknown(
    history: tuple[Path, dict[str, str]],
) -> None:
    repo, shas = history
    code = CodeVersions(repo, shas["platform"])
    assert await code.status(shas["platform"]) == "current"
    assert await code.status(shas["old"]) == "behind"
    assert await code.status(shas["base"]) == "behind"
    assert await code.status(shas["newer"]) == "ahead"
    assert await code.status(shas["side"]) == "diverged"
    assert await code.status("f" * 40) == "unknown"  # not in the repo
    assert await code.status(None) == "unknown"
    gone = CodeVersions(repo.parent / "nothing-here", shas["platform"])
    assert await gone.status(shas["old"]) == "unknown"


@pytest.mark.parametrize(
    "reported",
    ["HEAD", "main", "HEAD~1", "--output=/tmp/pwned", "-h", "a" * 39, "A" * 40, "a" * 40 + "\n"],
)
async def test_a_daemon_reporting_a_ref_or_an_option_gets_no_git_call(
    history: tuple[Path, dict[str, str]], reported: str
) -> None:
    """A hostile daemon reports "HEAD" (which *is* the platform's commit to git) or an option:
    only a full lower-case hexadecimal SHA is ever given to git."""
    repo, shas = history
    code = CodeVersions(repo, shas["platform"])
    assert await code.status(reported) == "unknown"
    assert code.git_calls == 0


async def test_each_sha_is_asked_once_however_many_ask(
    history: tuple[Path, dict[str, str]],
) -> None:
    repo, shas = history
    code = CodeVersions(repo, shas["platform"])
    answers = await asyncio.gather(*(code.status(shas["newer"]) for _ in range(50)))
    assert set(answers) == {"ahead"}
    assert code.git_calls == 2  # is it behind? no; is it ahead? yes
    assert await code.status(shas["newer"]) == "ahead"
    assert code.git_calls == 2


async def test_the_cache_is_bounded(history: tuple[Path, dict[str, str]]) -> None:
    """A machine reporting made-up SHAs cannot grow the gateway's memory without bound."""
    repo, shas = history
    code = CodeVersions(repo, shas["platform"], cache_size=2)
    for n in range(5):
        assert await code.status(f"{n:040x}") == "unknown"
    assert len(code._cache) == 2
