"""A local machine's own user id: each sandboxed machine runs as a uid of its own from
``FLEET_SANDBOX_UIDS`` (``first-last``), so that nothing of the host or of another machine is
its to read or signal by ownership, only by what is mounted in its sandbox.

The uid is allocated once per machine (``<machine dir>/uid``, under a lock) and kept across
restarts; its home is chowned to it. bwrap itself runs as the platform's user (root: it mounts
the sandbox), and the machine's first process becomes the uid with ``setpriv`` before it runs
anything of the machine (bwrap keeps only CAP_SETUID/CAP_SETGID for that; a process whose
uids all leave 0 loses every capability).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from base import hostile_fs
from base.atomic import replace_file

SETPRIV = "/usr/bin/setpriv"


def machine_uid(root: Path, machine_id: str, uids: tuple[int, int]) -> int:
    """The uid of machine ``machine_id`` (its directory under ``root``), allocated if new."""
    return allocate_uid(root / machine_id / "uid", root, uids)


def allocate_uid(mine: Path, root: Path, uids: tuple[int, int]) -> int:
    """The uid recorded in ``mine``, allocated if new: one no machine under ``root``, no
    pooled machine (``<data>/pool/<provider>/<owner>/<slot>/uid``) and no memory image
    (``<data>/snapshots/<id>.memory/uid``) holds."""
    lock_path = root.parent / "sandbox" / "uids.lock"  # not in root: one dir per machine there
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (kept := read_uid(mine)) is not None:
            return kept
        # The pool's first: a claim renames a slot's files into ``root`` without this lock,
        # and a rename between the two listings must be seen in the second.
        pool = root.parent / "pool"
        held = [*pool.glob("*/*/*/uid"), *pool.glob("*/*/*/root-uid"),
                *root.glob("*/uid"), *root.glob("*/root-uid"),
                *images_uids(root.parent)]  # fmt: skip
        taken = {uid for p in held if (uid := read_uid(p)) is not None}
        free = next((u for u in range(uids[0], uids[1] + 1) if u not in taken), None)
        if free is None:
            raise RuntimeError(f"every uid of FLEET_SANDBOX_UIDS {uids[0]}-{uids[1]} is taken")
        mine.parent.mkdir(parents=True, exist_ok=True)
        replace_file(mine, str(free))
        return free


def images_uids(data_dir: Path) -> list[Path]:
    """The uid files of every memory image on this host (LocalProvider.memory_dir): each
    machine restored from one runs as its source's uids, whether or not its source's directory
    is still there."""
    snapshots = data_dir / "snapshots"
    return [*snapshots.glob("*.memory/uid"), *snapshots.glob("*.memory/root-uid")]


def read_uid(path: Path) -> int | None:
    """The uid ``path`` records; None if there is none, or if the file is not one (left empty
    by an allocation killed before it wrote: such a file holds no uid and must not stop every
    later allocation)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return int(text) if text.isascii() and text.isdigit() else None


def give_home(home: Path, uid: int) -> None:
    """Everything under ``home`` (the platform may have written there as root) to ``uid``: by
    descriptor, since the machine may be swapping links into it meanwhile (base/hostile_fs.py)."""
    hostile_fs.chown_tree(home, uid, uid)


def give_upper(upper: Path, uid: int, uids: tuple[int, int]) -> None:
    """A copied overlay layer's files of a machine (owned by any uid of ``uids``, as the
    source machine's writes are) to ``uid``; root's and the image's users' stay theirs. The
    layer is a fresh copy no machine runs on yet, and no link is followed."""
    for top, dirs, files in os.walk(upper):
        for name in [*dirs, *files]:
            path = os.path.join(top, name)
            st = os.lstat(path)
            if uids[0] <= st.st_uid <= uids[1] or uids[0] <= st.st_gid <= uids[1]:
                own = uid if uids[0] <= st.st_uid <= uids[1] else st.st_uid
                group = uid if uids[0] <= st.st_gid <= uids[1] else st.st_gid
                os.chown(path, own, group, follow_symlinks=False)


def as_uid(uid: int, argv: list[str]) -> list[str]:
    """``argv`` run as ``uid`` (and its own group, no others, no capabilities at all)."""
    return [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--", *argv]  # fmt: skip


def trusting_gitconfig(data_dir: Path) -> Path:
    """The machine's ``/etc/gitconfig``: the host's, plus ``safe.directory = *``. The only
    repositories in a sandbox not owned by the machine's uid are the operator's, shared
    read-only (``FLEET_SANDBOX_SHARE``, admin-only local repos), which git would otherwise
    refuse to clone from as of "dubious ownership"."""
    host = Path("/etc/gitconfig")
    text = host.read_text() if host.is_file() else ""
    path = data_dir / "sandbox" / "gitconfig"
    wanted = f"{text}\n# fleetd: a machine's uid trusts the operator's shared repositories\n"
    wanted += "[safe]\n\tdirectory = *\n"
    if not path.is_file() or path.read_text() != wanted:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(path, wanted)
    return path
