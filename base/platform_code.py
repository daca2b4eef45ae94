"""The platform's own code: the git repository it comes from (FLEET_CODE_REPO, else this
checkout) and the commit it runs. The provisioner installs that commit in machines
(providers/code.py); the gateway compares each daemon's commit with it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from base.version import SOURCE_ROOT
from contracts.errors import NotFound, ProviderError


def code_repo(configured: str) -> Path:
    """The git repository the platform's code comes from (FLEET_CODE_REPO, else this checkout)."""
    return Path(configured) if configured else SOURCE_ROOT


def resolve_sha(repo: Path, ref: str) -> str:
    out = git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    sha = out.stdout.decode().strip()
    if out.returncode != 0 or not sha:
        raise NotFound(f"{ref!r} is not a commit in {repo}")
    return sha


def platform_sha(git_sha: str, repo: Path) -> str | None:
    """The SHA the platform runs: FLEET_GIT_SHA if set, else the code repo's HEAD."""
    if git_sha:
        return git_sha
    try:
        return resolve_sha(repo, "HEAD")
    except (NotFound, ProviderError):
        return None


def git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """``git -C repo args`` (its output read whole: git's answers about the platform's own
    repository); ProviderError when git cannot run, or (``check``) when it fails."""
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, timeout=60,
                             check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProviderError(f"git {args[0]} in {repo}: {exc}") from None
    if check and out.returncode != 0:
        raise ProviderError(f"git {args[0]} in {repo} failed: {out.stderr.decode().strip()}")
    return out
