"""Unpacking a hostile image's root file system (providers/local/image_rootfs.py), as root: links
are made, never followed (an absolute ``etc`` link to a host directory, ``home -> /``, a link out
through ``..``), so nothing lands outside the unpack directory; no device node, no FIFO, no
setuid or setgid bit; names with ``..`` are dropped; the top is root's."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

from providers.local.image_rootfs import unpack


def _add(tar: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, *, data: bytes = b"",
         link: str = "", mode: int = 0o644, uid: int = 0) -> None:  # fmt: skip
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.uid, info.gid = kind, link, mode, uid, uid
    info.size = len(data)
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3
    tar.addfile(info, io.BytesIO(data) if data else None)


def test_a_hostile_image_writes_nothing_outside(tmp_path: Path) -> None:
    outside = tmp_path / "host-etc"
    outside.mkdir()
    archive = tmp_path / "hostile.tar"
    with tarfile.open(archive, "w") as tar:
        _add(tar, ".", tarfile.DIRTYPE, mode=0o777, uid=1000)
        _add(tar, "etc", tarfile.SYMTYPE, link=str(outside))
        _add(tar, "etc/passwd", data=b"root::0:0::/:/bin/sh\n")
        _add(tar, "home", tarfile.SYMTYPE, link="/")
        _add(tar, "home/fleet", tarfile.DIRTYPE, mode=0o755)
        _add(tar, "up", tarfile.SYMTYPE, link="../..")
        _add(tar, "up/escaped", data=b"x")
        _add(tar, "../dotdot", data=b"x")
        _add(tar, "usr", tarfile.DIRTYPE, mode=0o755)
        _add(tar, "usr/su", data=b"#!/bin/sh\n", mode=0o4755)
        _add(tar, "usr/null", tarfile.CHRTYPE)
        _add(tar, "usr/fifo", tarfile.FIFOTYPE)
        _add(tar, "usr/hard", tarfile.LNKTYPE, link="usr/su")
        _add(tar, "usr/hard-out", tarfile.LNKTYPE, link="etc/passwd")
        _add(tar, "opt", tarfile.DIRTYPE, mode=0o1777)
    dest = tmp_path / "root"
    dropped = unpack(archive, dest)

    assert list(outside.iterdir()) == []  # nothing written through the etc link
    assert not (tmp_path / "dotdot").exists()
    assert not (tmp_path / "escaped").exists()
    assert not Path("/escaped").exists()
    assert not Path("/fleet").exists()
    assert os.readlink(dest / "etc") == str(outside)  # the links are kept as links
    assert os.readlink(dest / "home") == "/"
    assert sorted(os.listdir(dest / "usr")) == ["hard", "su"]  # no device, FIFO or link out
    su = (dest / "usr" / "su").stat()
    assert stat.S_IMODE(su.st_mode) == 0o755  # setuid cleared
    assert (dest / "usr" / "hard").stat().st_ino == su.st_ino
    assert stat.S_IMODE((dest / "opt").stat().st_mode) == 0o1777
    top = dest.stat()
    assert (top.st_uid, stat.S_IMODE(top.st_mode)) == (0, 0o755)  # the top is root's
    assert dropped == 7
