"""Whether a repo can be cloned, asked before ``repos.add`` stores it: ``git ls-remote`` of its
branch, run on the platform's host as every host-side git command for a tenant is
(environments/host_git.py: an empty HOME, no git configuration, no credential helper but the
repo's own, no ssh identity or agent of the host's, bounded in time, CPU, memory and output).
The repo's own credentials (a token given to repos.add) are all it has, as its clone will, and
it trusts the CAs the machine's clone trusts (``Settings.upstream_cas``).

What git answers decides: the branch listed, the repo added; no such repository (or one the
credentials given may not read: the machine's clone would fail the same way), RepoNotFound;
no such branch, BranchNotFound; a repo this host cannot reach or may not ask (its name not
resolved, no answer, over the time, an ssh remote for which only the machine may hold a key),
a warning: a network the machine alone reaches is not the platform's to judge.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Protocol

import structlog

from contracts import validation
from contracts.errors import BranchNotFound, BuildLimitExceeded, EnvironmentInvalid, RepoNotFound
from contracts.models import GitCredentials
from environments import host_git
from environments.host_git import CloneLimits

log = structlog.get_logger(__name__)

#: A credential helper that answers from this one git process's environment, as the
#: machine's askpass does: the token is never in argv, a file or git's configuration.
_HELPER = ("!f() { test \"$1\" = get && printf 'username=%s\\npassword=%s\\n' "
           '"$FLEET_GIT_USERNAME" "$FLEET_GIT_PASSWORD"; }; f')  # fmt: skip
#: git's words (lowercased) for a remote this host could not ask.
_UNCHECKED = (
    "could not resolve host", "could not resolve hostname", "couldn't connect to server",
    "failed to connect", "connection refused", "connection timed out", "timed out",
    "network is unreachable", "no route to host", "permission denied (publickey",
    "host key verification failed", "certificate", "ssl_connect", "gnutls",
)  # fmt: skip
#: git's words (lowercased) for no such repository, or none these credentials may read.
_NOT_FOUND = (
    "does not appear to be a git repository", "repository not found", "not found",
    "could not read username", "could not read password", "authentication failed",
    "returned error: 401", "returned error: 403", "returned error: 404", "no such file",
)  # fmt: skip


class RepoCheck(Protocol):
    async def __call__(self, url: str, branch: str, creds: GitCredentials | None) -> str | None:
        """None if the repo has the branch; a warning if it could not be checked. Raises
        RepoNotFound or BranchNotFound."""
        ...


def check_limits(timeout_s: float, trusted_cas: tuple[str, ...] = ()) -> CloneLimits:
    """A listing's limits: its time, and what a listing needs (it writes nothing); it trusts
    ``trusted_cas`` besides the host's CAs, as a machine's clone does."""
    return CloneLimits(time_s=timeout_s, cpu_s=max(1, int(timeout_s)), memory_mb=512,
                       disk_mb=1, trusted_cas=trusted_cas)  # fmt: skip


class GitRepoCheck:
    """The check as the gateway runs it (``check_limits``; one tree that stays empty)."""

    def __init__(self, timeout_s: float, trusted_cas: tuple[str, ...] = ()) -> None:
        self.limits = check_limits(timeout_s, trusted_cas)

    async def __call__(self, url: str, branch: str, creds: GitCredentials | None) -> str | None:
        validation.check_repo_url(url)
        validation.check_branch(branch)
        ref = f"refs/heads/{branch}"
        env, args = None, ["ls-remote", "--heads", "--", url, ref]
        if creds is not None:
            env = {"FLEET_GIT_USERNAME": creds.username, "FLEET_GIT_PASSWORD": creds.token}
            args = ["-c", f"credential.helper={_HELPER}", *args]
        try:
            with tempfile.TemporaryDirectory(prefix="fleetd-repo-check-") as tree:
                out = await host_git.run(args, env, self.limits, Path(tree))
        except BuildLimitExceeded:
            return unchecked(url, f"no answer within {self.limits.time_s:g}s")
        except EnvironmentInvalid as exc:
            return judge_failure(url, exc.message)
        judge_listing(url, branch, out)
        return None


def judge_listing(url: str, branch: str, out: str) -> None:
    """git listed the remote's matching refs: the branch's own line, or BranchNotFound."""
    ref = f"refs/heads/{branch}"
    if any(line.split("\t", 1)[-1] == ref for line in out.splitlines()):
        return
    raise BranchNotFound(f"{url} has no branch {branch!r}", data={"url": url, "branch": branch})


def judge_failure(url: str, message: str) -> str:
    """git failed: RepoNotFound, or the warning of a repo this host could not ask. The URL
    is taken out of git's words first: a repo's name is no verdict."""
    if (line := _line_with(message, url, _UNCHECKED)) is not None:
        return unchecked(url, line)
    if (line := _line_with(message, url, _NOT_FOUND)) is not None:
        raise RepoNotFound(
            f"no repository at {url}, or not one the credentials given may read (none given: "
            f"a private repo needs a token): {line}", data={"url": url}
        )  # fmt: skip
    return unchecked(url, message.strip().splitlines()[-1] if message.strip() else "")


def unchecked(url: str, why: str) -> str:
    log.info("repos.check_unchecked", url=url, reason=why[:300])
    return (f"not checked: the platform could not ask {url} ({why[:300]}); it is added, "
            "and the machine's clone will tell")  # fmt: skip


def _line_with(message: str, url: str, words: tuple[str, ...]) -> str | None:
    """The first line of git's ``message`` that holds one of ``words`` (the URL aside)."""
    for line in message.splitlines():
        said = line.replace(url, "").lower()
        if any(word in said for word in words):
            return line.strip()
    return None
