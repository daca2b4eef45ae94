"""A repo's files on the platform's host: a shallow checkout in a cache directory, read without
ever following a link the repo put there (core/hostile_fs.py), and hashed for the build cache.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path

from contracts import validation
from contracts.errors import EnvironmentInvalid
from contracts.models import Repo
from core import hostile_fs

#: The places a devcontainer.json is looked for, in the spec's order (NAME: any folder).
DEVCONTAINER_PLACES = (".devcontainer/devcontainer.json", ".devcontainer.json")
#: The largest Dockerfile, feature script or context read.
MAX_FILE_BYTES = 1024 * 1024
MAX_CONTEXT_BYTES = 512 * 1024 * 1024
MAX_CONTEXT_FILES = 20_000
_locks: dict[Path, asyncio.Lock] = {}


async def checkout(repo: Repo, cache: Path, *, env: Mapping[str, str] | None = None,
                   timeout_s: float = 300.0) -> Path:  # fmt: skip
    """A shallow checkout of ``repo``'s branch at its newest commit, in ``cache`` (one
    directory per URL and branch, brought up to date on each call). Raises
    EnvironmentInvalid if git fails."""
    validation.check_repo_url(repo.url)
    validation.check_branch(repo.branch)
    key = hashlib.sha256(f"{repo.url}\n{repo.branch}".encode()).hexdigest()[:24]
    dest = cache / key
    lock = _locks.setdefault(dest, asyncio.Lock())
    async with lock:
        cache.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not (dest / ".git").is_dir():
            await _git(["clone", "--depth", "1", "--branch", repo.branch, "--single-branch",
                        "--no-tags", "--", repo.url, str(dest)], env, timeout_s)  # fmt: skip
            return dest
        await _git(["-C", str(dest), "fetch", "--depth", "1", "--no-tags", "origin", "--",
                    repo.branch], env, timeout_s)  # fmt: skip
        await _git(["-C", str(dest), "checkout", "-q", "-f", "FETCH_HEAD"], env, timeout_s)
        await _git(["-C", str(dest), "clean", "-q", "-ffdx"], env, timeout_s)
    return dest


async def _git(args: list[str], env: Mapping[str, str] | None, timeout_s: float) -> None:
    # No prompt, no helper that could store a token, no system or global config of the host.
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null",
            **(env or {})}  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        "git", "-c", "credential.helper=", "-c", "core.hooksPath=/dev/null", *args,
        env=full, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise EnvironmentInvalid(f"git {args[0]} timed out after {timeout_s:g}s") from None
    if proc.returncode != 0:
        tail = out.decode(errors="replace").strip()[-2000:]
        raise EnvironmentInvalid(f"git {' '.join(args[:1])} failed: {tail}")


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
