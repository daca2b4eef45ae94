"""Putting the platform's code where a machine's daemon runs it: ``git archive`` of one commit
into the machine's code store (base/codestore.py), a directory of the platform's, outside the
machine's home, that the machine sees read-only; then the record of it as current."""

from __future__ import annotations

import io
import os
import secrets
import shutil
import tarfile
from pathlib import Path

from base.atomic import replace_file
from base.codestore import CURRENT_FILE, CodeUnverified, record, tree_digest
from base.platform_code import git, resolve_sha
from contracts.daemon.machine_files import CODE_SHA_FILE
from contracts.errors import ProviderError

#: What a daemon imports: its own package, the contracts and base.
DAEMON_TREES = ("contracts", "base", "daemon")


def install_code(repo: Path, ref: str, store: Path) -> tuple[str, bool]:
    """Install the commit ``ref`` of ``repo`` in the code ``store`` (a directory of the
    platform's: no path in it is the machine's) and record it as current; (sha, newly
    installed). Each install unpacks the commit afresh and compares trees: a directory that
    differs from the commit is replaced, never blessed. The record is replaced whole."""
    sha = resolve_sha(repo, ref)
    dest = store / sha
    tmp = store / f".tmp-{sha[:12]}-{secrets.token_hex(4)}"
    try:
        store.mkdir(mode=0o755, parents=True, exist_ok=True)
        unpack(repo, sha, tmp)
        digest = tree_digest(tmp)
        new = not _holds(dest, digest)
        if new:
            _swap_in(tmp, dest)
        _write(store, CURRENT_FILE, record(sha, digest))
    except (OSError, CodeUnverified) as exc:
        raise ProviderError(f"could not install code {sha[:12]} in {store}: {exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sha, new


def unpack(repo: Path, sha: str, dest: Path) -> None:
    """``dest`` (new): the commit's daemon trees and its SHA marker, read-only to others."""
    tar = git(repo, "archive", "--format=tar", sha, "--", *DAEMON_TREES).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(dest, filter=_readonly, numeric_owner=True)  # noqa: S202 - filtered
    (dest / CODE_SHA_FILE).write_text(sha + "\n")
    os.chmod(dest / CODE_SHA_FILE, 0o644)
    os.chmod(dest, 0o755)  # noqa: S103 - readable by the machine, writable by us only


def _holds(path: Path, digest: str) -> bool:
    try:
        return tree_digest(path) == digest
    except CodeUnverified:
        return False


def _swap_in(tmp: Path, dest: Path) -> None:
    old = dest.with_name(f".old-{dest.name[:12]}-{secrets.token_hex(4)}")
    if dest.exists():
        os.rename(dest, old)
    os.rename(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def _readonly(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """git's files and directories only (no links, no devices), writable by their owner
    only (the platform)."""
    found = tarfile.data_filter(member, dest)
    if not (found.isfile() or found.isdir()):
        return None
    mode = 0o755 if found.isdir() or found.mode & 0o100 else 0o644
    return found.replace(mode=mode, uid=os.getuid(), gid=os.getgid(), uname="", gname="",
                         deep=False)  # fmt: skip


def _write(store: Path, name: str, data: bytes) -> None:
    replace_file(store / name, data)
