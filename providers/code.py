"""Putting the platform's code on a machine: ``git archive`` of one commit into
``~/.fleet/code/<sha>/``, which the daemon then runs (daemon.selfUpdate)."""

from __future__ import annotations

import io
import os
import secrets
import shutil
import subprocess
import tarfile
from pathlib import Path

from contracts.errors import NotFound, ProviderError
from contracts.machine_files import CODE_DIR, CODE_SHA_FILE
from core.version import SOURCE_ROOT

#: What a daemon imports: its own package, the contracts and the core.
DAEMON_TREES = ("contracts", "core", "daemon")


def code_repo(configured: str) -> Path:
    """The git repository the platform's code comes from (FLEET_CODE_REPO, else this checkout)."""
    return Path(configured) if configured else SOURCE_ROOT


def resolve_sha(repo: Path, ref: str) -> str:
    out = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
    sha = out.stdout.decode().strip()
    if out.returncode != 0 or not sha:
        raise NotFound(f"{ref!r} is not a commit in {repo}")
    return sha


def install_code(repo: Path, ref: str, home: Path) -> tuple[str, bool]:
    """Install the commit ``ref`` of ``repo`` under the machine's home; (sha, newly installed).
    Atomic: the directory appears complete, under its final name, or not at all."""
    sha = resolve_sha(repo, ref)
    root = home / CODE_DIR
    dest = root / sha
    if (dest / CODE_SHA_FILE).is_file():
        return sha, False
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{sha[:12]}-{secrets.token_hex(4)}"
    try:
        tar = _git(repo, "archive", "--format=tar", sha, "--", *DAEMON_TREES).stdout
        with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
            archive.extractall(tmp, filter="data")  # "data": no links out, no devices
        (tmp / CODE_SHA_FILE).write_text(sha + "\n")
        os.rename(tmp, dest)
    except OSError as exc:
        raise ProviderError(f"could not install code {sha[:12]} in {root}: {exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sha, True


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, timeout=60,
                             check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProviderError(f"git {args[0]} in {repo}: {exc}") from None
    if check and out.returncode != 0:
        raise ProviderError(f"git {args[0]} in {repo} failed: {out.stderr.decode().strip()}")
    return out


def platform_sha(git_sha: str, repo: Path) -> str | None:
    """The SHA the platform runs: FLEET_GIT_SHA if set, else the code repo's HEAD."""
    if git_sha:
        return git_sha
    try:
        return resolve_sha(repo, "HEAD")
    except (NotFound, ProviderError):
        return None
