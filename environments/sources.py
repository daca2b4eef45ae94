"""A repo's files on the platform's host: a shallow checkout in a cache directory, read without
ever following a link the repo put there (base/hostile_fs.py), and hashed for the build cache.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import shutil
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from base import hostile_fs
from base.keyed_locks import KeyedLocks
from contracts import validation
from contracts.errors import BuildLimitExceeded, EnvironmentInvalid
from contracts.models import Repo
from controlplane.settings import Settings
from environments import host_git
from environments.host_git import CloneLimits

#: The places a devcontainer.json is looked for, in the spec's order (NAME: any folder).
DEVCONTAINER_PLACES = (".devcontainer/devcontainer.json", ".devcontainer.json")
#: The largest Dockerfile, feature script or context read.
MAX_FILE_BYTES = 1024 * 1024
MAX_CONTEXT_BYTES = 512 * 1024 * 1024
MAX_CONTEXT_FILES = 20_000


def clone_limits(settings: Settings) -> CloneLimits:
    return CloneLimits(time_s=settings.env_clone_timeout_s, cpu_s=settings.env_clone_cpu_s,
                       memory_mb=settings.env_clone_memory_mb,
                       disk_mb=settings.env_clone_disk_mb,
                       trusted_cas=settings.upstream_cas)  # fmt: skip


async def checkout(repo: Repo, cache: Path, *, locks: KeyedLocks,
                   env: Mapping[str, str] | None = None,
                   limits: CloneLimits | None = None) -> Path:  # fmt: skip
    """A shallow checkout of ``repo``'s branch at its newest commit, in ``cache`` (one
    directory per URL and branch, brought up to date on each call), made with no identity of
    the host's and within ``limits`` (environments/host_git.py); one call per directory at a
    time, held by ``locks`` (the process's: SharedBuilds.checkouts). Raises
    EnvironmentInvalid if git fails, BuildLimitExceeded over a limit: then no checkout is
    left."""
    validation.check_repo_url(repo.url)
    validation.check_branch(repo.branch)
    limits = limits or CloneLimits()
    key = hashlib.sha256(f"{repo.url}\n{repo.branch}".encode()).hexdigest()[:24]
    dest = cache / key
    async with locks.held(dest):
        cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh = not (dest / ".git").is_dir()
        try:
            if fresh:
                await host_git.run(["clone", "--depth", "1", "--branch", repo.branch,
                                    "--single-branch", "--no-tags", "--", repo.url, str(dest)],
                                   env, limits, dest)  # fmt: skip
                return dest
            await host_git.run(["-C", str(dest), "fetch", "--depth", "1", "--no-tags",
                                "origin", "--", repo.branch], env, limits, dest)  # fmt: skip
            await host_git.run(["-C", str(dest), "checkout", "-q", "-f", "FETCH_HEAD"], env,
                               limits, dest)  # fmt: skip
            await host_git.run(["-C", str(dest), "clean", "-q", "-ffdx"], env, limits, dest)
        except BuildLimitExceeded:
            await asyncio.to_thread(shutil.rmtree, dest, ignore_errors=True)
            raise
        except BaseException:
            if fresh:  # a partial clone is never taken for one
                await asyncio.to_thread(shutil.rmtree, dest, ignore_errors=True)
            raise
    return dest


def read(checkout: Path, rel: str, cap: int = MAX_FILE_BYTES) -> bytes:
    """The regular file ``rel`` of the checkout; EnvironmentInvalid for a missing file, a link
    anywhere on its path, anything not a regular file, or a file over ``cap``."""
    try:
        return hostile_fs.read_file(checkout, rel, cap)
    except FileNotFoundError:
        raise EnvironmentInvalid(f"{rel}: no such file in the repo") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise EnvironmentInvalid(f"{rel}: a link on its path is never followed") from None
        if exc.errno == errno.ENOTDIR:
            raise EnvironmentInvalid(
                f"{rel}: a part of its path is a link (never followed) or not a folder"
            ) from None
        # hostile_fs's own message names the path: a link's target is never opened.
        raise EnvironmentInvalid(f"{exc.strerror or exc} (links are never followed)") from None


def present(checkout: Path, rel: str) -> bool:
    """Whether anything (a link included) is at ``rel`` in the checkout; none is followed."""
    try:
        hostile_fs.read_file(checkout, rel, 0)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # a link, a folder, a file over the cap: ``read`` says which
    return True


def find_devcontainer(checkout: Path) -> str | None:
    """The first devcontainer.json of the spec's places in the checkout (links not taken)."""
    for rel in DEVCONTAINER_PLACES:
        if _is_regular(checkout, rel):
            return rel
    top = checkout / ".devcontainer"
    if top.is_symlink() or not top.is_dir():
        return None
    for name in sorted(os.listdir(top)):
        rel = f".devcontainer/{name}/devcontainer.json"
        if _is_regular(checkout, rel):
            return rel
    return None


def _is_regular(checkout: Path, rel: str) -> bool:
    try:
        hostile_fs.read_file(checkout, rel, 0)
    except hostile_fs.Refused as exc:
        return exc.errno == errno.EFBIG  # a regular file (over a cap of nothing)
    except OSError:
        return False
    return True


def walk(top: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry below ``top`` (a checkout this process made: nothing runs in it), sorted,
    never following a link; EnvironmentInvalid past the context's caps."""
    count, size = 0, 0
    for root, dirs, files in os.walk(top, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not (root == str(top) and d == ".git"))
        for name in sorted(dirs + files):
            full = os.path.join(root, name)
            st = os.lstat(full)
            count += 1
            size += st.st_size if stat.S_ISREG(st.st_mode) else 0
            if count > MAX_CONTEXT_FILES or size > MAX_CONTEXT_BYTES:
                raise EnvironmentInvalid(
                    f"the build context is over {MAX_CONTEXT_FILES} files or "
                    f"{MAX_CONTEXT_BYTES // 2**20} MiB"
                )
            yield os.path.relpath(full, top), st


def hash_tree(top: Path, digest: hashlib._Hash) -> None:
    """Feed ``digest`` with every name, kind, mode, link target and file content below top."""
    for rel, st in walk(top):
        digest.update(f"{rel}\0{st.st_mode:o}\0".encode())
        full = top / rel
        if stat.S_ISLNK(st.st_mode):
            digest.update(os.readlink(full).encode())
        elif stat.S_ISREG(st.st_mode):
            fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        digest.update(b"\0")
