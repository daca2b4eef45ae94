"""The second pass of a docker home's copy (providers/docker/sync.py), on this host's files: after
a ``cp -a`` of a tree that then changed in every way a machine changes its home, the pass makes
the copy equal to the tree (content, kinds, owners, modes, times, links); an entry unchanged
since before the first pass is left as that pass made it (it is not read again)."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import time
from pathlib import Path

from providers.docker.sync import Sync, main


def tree(top: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under ``top``, as a copy must keep it; hard links as the names they join."""
    seen: dict[tuple[int, int], str] = {}
    found: dict[str, tuple[object, ...]] = {}
    for path in sorted([top, *top.rglob("*")]):
        st = os.lstat(path)
        rel = str(path.relative_to(top))
        what: object = None
        if stat.S_ISREG(st.st_mode):
            what = hashlib.sha256(path.read_bytes()).hexdigest()
            what = (what, seen.setdefault((st.st_dev, st.st_ino), rel))
        elif stat.S_ISLNK(st.st_mode):
            what = os.readlink(path)
        mtime = None if stat.S_ISLNK(st.st_mode) else st.st_mtime_ns
        found[rel] = (stat.S_IFMT(st.st_mode), st.st_mode, st.st_uid, st.st_gid, mtime, what)
    return found


def cp_a(src: Path, dst: Path) -> int:
    """``dst``, a ``cp -a`` of ``src``; the pass's ``since``, as providers/docker/copy.py takes
    it."""
    since = time.time_ns() - 10**9
    dst.mkdir()
    subprocess.run(["cp", "-a", "-P", f"{src}/.", f"{dst}/"], check=True)
    return since


def test_the_pass_makes_the_copy_equal_to_the_changed_tree(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub" / "deep").mkdir(parents=True)
    for name in ("kept", "same-size", "gone", "becomes-dir", "old-times", "x", "y", "linked"):
        (src / name).write_text(f"{name}\n")
    (src / "sub" / "deep" / "kept").write_text("deep\n")
    (src / "dir-becomes-file").mkdir()
    (src / "dir-becomes-file" / "inside").write_text("in\n")
    os.link(src / "linked", src / "sub" / "linked-too")
    (src / "sym").symlink_to("kept")
    since = cp_a(src, dst)
    assert tree(dst) == tree(src)

    (src / "same-size").write_text("SAME-SIZE\n")  # same size, same second
    (src / "gone").unlink()
    (src / "becomes-dir").unlink()
    (src / "becomes-dir").mkdir()
    (src / "becomes-dir" / "new").write_text("new\n")
    (src / "dir-becomes-file" / "inside").unlink()
    (src / "dir-becomes-file").rmdir()
    (src / "dir-becomes-file").write_text("a file now\n")
    (src / "old-times").write_text("OLD-TIMES\n")
    os.utime(src / "old-times", ns=(10**9, 10**9))  # its times set back: its ctime is not
    os.rename(src / "x", src / "tmp")  # two names swapped
    os.rename(src / "y", src / "x")
    os.rename(src / "tmp", src / "y")
    (src / "linked").write_text("LINKED, changed\n")  # both names of one file
    os.link(src / "kept", src / "kept-link")  # a new link to a file otherwise unchanged
    (src / "sym").unlink()
    (src / "sym").symlink_to("sub/deep/kept")
    os.mkfifo(src / "fifo")
    os.chmod(src / "sub" / "deep" / "kept", 0o600)
    (src / "sub" / "new-dir").mkdir(mode=0o700)
    with open(src / "sparse", "wb") as f:  # 64 MiB, of which 2 bytes are data
        f.write(b"a")
        f.seek(64 << 20)
        f.write(b"z")

    assert main(["-c", str(src), str(dst), str(since)]) == 0
    assert tree(dst) == tree(src)
    assert os.lstat(dst / "sparse").st_blocks * 512 < 1 << 20  # its holes kept


def test_an_entry_unchanged_since_the_first_pass_is_left_as_it_made_it(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "big").write_text("as copied\n")
    cp_a(src, dst)
    (dst / "big").write_text("not read again\n")
    since = os.lstat(src / "big").st_ctime_ns + 1
    Sync(since).tree(str(src), str(dst))
    assert (dst / "big").read_text() == "not read again\n"
