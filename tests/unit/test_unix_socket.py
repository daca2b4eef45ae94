"""`short_socket_path`: a socket path a server can bind, in a directory nobody else controls."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from base.unix_socket import MAX_SOCKET_PATH, short_socket_path


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_a_short_path_is_kept(tmp: Path) -> None:
    assert short_socket_path(Path("/run/x"), "v.sock", "p") == Path("/run/x/v.sock")


def test_a_long_one_goes_to_a_private_directory_stable_per_directory(tmp: Path) -> None:
    deep = tmp / ("d" * 120)
    got = short_socket_path(deep, "v.sock", "p")
    assert len(str(got)) <= MAX_SOCKET_PATH
    assert got.parent.parent == tmp
    assert got.parent.stat().st_mode & 0o777 == 0o700
    assert got == short_socket_path(deep, "v.sock", "p")
    assert got != short_socket_path(tmp / ("e" * 120), "v.sock", "p")


def test_a_private_directory_open_to_others_is_refused(tmp: Path) -> None:

    planted = tmp / f"p-{os.getuid()}"
    planted.mkdir()
    planted.chmod(0o777)  # another user could swap the socket under the server's clients
    with pytest.raises(PermissionError, match="not a private directory"):
        short_socket_path(tmp / ("d" * 120), "v.sock", "p")


def test_a_symlink_in_its_place_is_refused(tmp: Path) -> None:

    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp / f"p-{os.getuid()}").symlink_to(elsewhere)
    with pytest.raises(PermissionError, match="not a private directory"):
        short_socket_path(tmp / ("d" * 120), "v.sock", "p")
