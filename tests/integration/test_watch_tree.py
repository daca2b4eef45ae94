"""A watch's tree (daemon/files/watch_tree.py) on this host's real inotify, in a home of its own: no
link is followed out of the home, neither to start nor below; a directory moved out of the
tree is no longer watched; a tree past the bound is refused at the start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from contracts.daemon.watch import FILE_EVENT_TYPES, FileEvent
from contracts.errors import InvalidParams, ToolError
from daemon.files import watch_tree
from daemon.files.watch_tree import WatchTree

ALL = frozenset(FILE_EVENT_TYPES)


def tree(home: Path, path: str, seen: list[FileEvent], recursive: bool = True) -> WatchTree:
    return WatchTree(str(home), path, recursive=recursive, kinds=ALL, emit=seen.append)


def read(t: WatchTree) -> None:
    while batch := t.inotify.read():
        t.handle(batch)


def test_no_link_is_followed_out_of_the_home(tmp_path: Path) -> None:
    home, outside = tmp_path / "home", tmp_path / "outside"
    (home / "w").mkdir(parents=True)
    outside.mkdir()
    (home / "out").symlink_to(outside)
    (home / "w" / "out").symlink_to(outside)
    seen: list[FileEvent] = []
    with pytest.raises(InvalidParams):
        tree(home, "out", seen)
    with pytest.raises(InvalidParams):
        tree(home, str(outside), seen)
    t = tree(home, "w", seen)
    try:
        assert t.watched_dirs == 1  # the link below is an entry, not a directory to watch
        (outside / "secret").write_text("x")
        (home / "w" / "mine").write_text("y")
        read(t)
    finally:
        t.close()
    assert {e.path for e in seen} == {f"{home}/w/mine"}


def test_a_directory_moved_out_of_the_tree_is_no_longer_watched(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "w" / "sub").mkdir(parents=True)
    (home / "elsewhere").mkdir()
    seen: list[FileEvent] = []
    t = tree(home, "w", seen)
    try:
        assert t.watched_dirs == 2
        os.rename(home / "w" / "sub", home / "elsewhere" / "sub")
        read(t)
        assert t.watched_dirs == 1
        (home / "elsewhere" / "sub" / "f").write_text("x")
        read(t)
    finally:
        t.close()
    assert [(e.type, e.path) for e in seen] == [("rename", f"{home}/w/sub")]


def test_a_tree_past_the_bound_is_refused_at_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch_tree, "MAX_WATCHED_DIRS", 3)
    home = tmp_path / "home"
    for n in range(4):
        (home / "w" / f"d{n}").mkdir(parents=True)
    with pytest.raises(ToolError, match="more than 3 directories"):
        tree(home, "w", [])
    t = tree(home, "w", [], recursive=False)  # one directory: within it
    t.close()
