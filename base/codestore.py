"""A machine's store of installed daemon code, and which of it the machine runs.

The store is a directory the platform alone writes (``<data-dir>/machines/<id>/code`` for a
local machine, the volume ``fleet-<id>-code`` for a docker one), owned by root and mounted
read-only into the machine at ``CODE_MOUNT``: one directory per commit (``<sha>/``, made
complete under a temporary name, then renamed) and ``current``, the platform's record of the
commit the machine is to run and the digest of its tree. The daemon and its supervisor run
code from here only after checking it against that record (``current_code``): the machine can
neither write the store nor name another directory.

Standard library only: the supervisor imports this.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

from contracts.daemon.machine_files import CODE_SHA_FILE

#: Where a machine sees its store (read-only), and the variable that names it to its daemon.
CODE_MOUNT = "/run/fleet/code"
STORE_VAR = "FLEET_CODE_STORE"
#: In the store: the platform's record of the code to run (``{"gitSha", "treeDigest"}``).
CURRENT_FILE = "current"
FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_MAX_RECORD = 4096


class CodeUnverified(Exception):
    """The code asked for is not what the platform installed and recorded."""


def tree_digest(root: Path) -> str:
    """sha256 over every path, executable bit and content under ``root`` in a stable order;
    a link or anything but a file or a directory anywhere is refused."""
    # Imported here, not with the module: the daemon imports this module before
    # daemon/lean.py has imported hashlib without OpenSSL (an idle daemon maps no libssl).
    import hashlib

    digest = hashlib.sha256()
    for parent, dirs, files in os.walk(root, onerror=_raise):
        dirs.sort()
        for name in sorted(files):
            path = Path(parent, name)
            st = path.lstat()
            if not stat.S_ISREG(st.st_mode):
                raise CodeUnverified(f"{path} is not a regular file")
            rel = path.relative_to(root).as_posix().encode()
            digest.update(b"%d:%s:%d:" % (len(rel), rel, st.st_mode & 0o111 != 0))
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        for name in dirs:  # os.walk lists a link to a directory here: refused, never followed
            if not stat.S_ISDIR(Path(parent, name).lstat().st_mode):
                raise CodeUnverified(f"{Path(parent, name)} is not a directory")
    return digest.hexdigest()


def _raise(exc: OSError) -> None:
    raise CodeUnverified(f"cannot read the code: {exc}")


def record(sha: str, digest: str) -> bytes:
    """The contents of ``current`` for ``sha`` whose tree has ``digest``."""
    return json.dumps({"gitSha": sha, "treeDigest": digest}).encode() + b"\n"


def read_current(store: Path) -> tuple[str, str] | None:
    """(git SHA, tree digest) of the platform's record, None when it has none."""
    try:
        with open(store / CURRENT_FILE, "rb") as f:
            raw = json.loads(f.read(_MAX_RECORD))
        sha, digest = str(raw["gitSha"]), str(raw["treeDigest"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CodeUnverified(f"the platform's record of the code is unreadable: {exc}") from None
    if not FULL_SHA.fullmatch(sha):
        raise CodeUnverified(f"the platform's record names {sha[:80]!r}, not a commit")
    return sha, digest


def current_code(store: Path, want: str | None = None) -> tuple[Path, str] | None:
    """The directory and SHA of the code the platform recorded as current, checked against its
    digest; None when nothing is recorded. ``want``: a SHA (or a prefix of one) the caller was
    asked for, which must be the recorded one."""
    found = read_current(store)
    if found is None:
        return None
    sha, digest = found
    if want is not None and not sha.startswith(want):
        raise CodeUnverified(f"code {want!r} is not the code the platform installed ({sha[:12]})")
    path = store / sha
    try:
        marked = (path / CODE_SHA_FILE).read_text().strip()
    except OSError as exc:
        raise CodeUnverified(f"code {sha[:12]} is not installed: {exc}") from None
    if marked != sha or tree_digest(path) != digest:
        raise CodeUnverified(f"the code in {path} is not what the platform installed")
    return path, sha


def with_code(
    code_dir: Path, environ: dict[str, str], *, started_with: str | None = None
) -> dict[str, str]:
    """``environ`` with ``code_dir`` first on its import path, in place of any other directory
    of the store; the rest (a docker image's libraries) kept. ``started_with``: the import
    path this process was started with (a daemon takes it out of its environment: the commands
    it runs must not inherit fleetd's code path), in place of ``environ``'s."""
    base = started_with or environ.get("PYTHONPATH", "")
    kept = [p for p in base.split(os.pathsep) if p and Path(p).parent != code_dir.parent]
    return environ | {"PYTHONPATH": os.pathsep.join([str(code_dir), *kept])}
