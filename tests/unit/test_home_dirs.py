"""The daemon's tools on the home's tree (make a directory, move, list deep) on a real file
system: what must stay inside the home whatever the paths and links, and the rules of each
(already there, into itself, the depth and the entry bound)."""

from __future__ import annotations

import grp
import os
import pwd
import time
from pathlib import Path

import pytest

from contracts.daemon.files import (
    ListDirParams,
    MakeDirParams,
    MakeDirResult,
    MoveParams,
    MoveResult,
)
from contracts.errors import FileNotFound, FleetError, InvalidParams, WrongFileKind
from daemon.files import dirs as dir_tools, tools as files
from tests.unit.test_home_files import _flipping, home

__all__ = ["home"]  # the fixture (a home, and a file beside it: outside/f), re-exported


def mkdir(home: Path, path: str, parents: bool = True) -> MakeDirResult:
    return dir_tools.make_dir(str(home), MakeDirParams(path=path, parents=parents))


def move(home: Path, source: str, destination: str) -> MoveResult:
    return dir_tools.move(str(home), MoveParams(source=source, destination=destination))


def listed(home: Path, path: str = "~", **params: object) -> list[str]:
    got = files.list_dir(str(home), ListDirParams(path=path, **params))  # type: ignore[arg-type]
    return [e.name for e in got.entries]


# --- confinement -------------------------------------------------------------------------------
def test_nothing_is_made_or_moved_outside_the_home(home: Path) -> None:
    outside = home.parent / "outside"
    (home / "out").symlink_to(outside)  # planted by code on the machine
    for path in ("../outside/new", str(outside / "new"), "out/new", "sub/../../x"):
        with pytest.raises(InvalidParams):
            mkdir(home, path)
        with pytest.raises(InvalidParams) as err:
            move(home, "sub/f", path)
        assert err.value.field == "$.destination"
    for path in ("../outside/f", "out/f"):
        with pytest.raises(InvalidParams) as err:
            move(home, path, "stolen")
        assert err.value.field == "$.source"
    assert sorted(p.name for p in outside.iterdir()) == ["f"]
    assert not (home / "stolen").exists()
    moved = move(home, "out", "sub/out2")  # the link itself moves, never what it points to
    assert (moved.entry.kind, moved.entry.target) == ("symlink", str(outside))
    assert (outside / "f").read_text() == "SECRET"


def test_a_deep_listing_never_enters_a_link(home: Path) -> None:
    (home / "sub" / "out").symlink_to(home.parent / "outside")
    (home / "sub" / "in").symlink_to("../sub")
    names = listed(home, depth=16)
    assert names == ["sub", "sub/f", "sub/in", "sub/out"]


def test_a_link_swapped_in_while_listing_deep_never_lists_outside(home: Path) -> None:
    """Code on the machine flips ``~/d`` between a directory and a link out while the daemon
    lists the home 3 levels deep: it must list ``d``'s own entries or none, never what is
    outside (``outside/f``, which would show as ``d/f``)."""
    (home / "d").mkdir()
    (home / "d" / "mine").write_text("x")
    seen, inside, without = set[str](), 0, 0
    with _flipping(home / "d", home.parent / "outside"):
        deadline = time.monotonic() + 20
        while (inside < 50 or without < 50) and time.monotonic() < deadline:
            try:
                names = listed(home, depth=3)
            except FleetError:
                continue
            seen.update(names)
            inside += "d/mine" in names
            without += "d/mine" not in names
    assert (inside, without) >= (50, 50), "the race never happened: the test proves nothing"
    assert "d/f" not in seen


# --- makeDir -----------------------------------------------------------------------------------
def test_make_dir_then_it_already_exists(home: Path) -> None:
    made = mkdir(home, "a/b/c")
    assert (made.path, made.created, made.entry.kind, made.entry.name) == (
        str(home / "a" / "b" / "c"), True, "dir", "c")  # fmt: skip
    assert (made.entry.permissions or "")[:1] == "d"
    again = mkdir(home, "~/a/b/c")
    assert (again.created, again.entry.kind) == (False, "dir")
    assert mkdir(home, "~").created is False  # the home itself is a directory there already


def test_make_dir_refuses_what_is_not_a_directory_and_missing_parents(home: Path) -> None:
    (home / "to-dir").symlink_to("sub")
    for path, kind in (("sub/f", "file"), ("to-dir", "symlink")):  # a link is never followed
        with pytest.raises(WrongFileKind) as err:
            mkdir(home, path)
        assert err.value.data == {"kind": kind}
    with pytest.raises(WrongFileKind):
        mkdir(home, "sub/f/below")  # a component that is a file
    with pytest.raises(FileNotFound, match="parents"):
        mkdir(home, "x/y", parents=False)
    assert not (home / "x").exists()
    assert mkdir(home, "sub/new", parents=False).created


# --- move --------------------------------------------------------------------------------------
def test_move_renames_and_replaces_a_file_as_rename_does(home: Path) -> None:
    (home / "other").write_text("replaced")
    moved = move(home, "sub/f", "other")
    assert (moved.path, moved.entry.name, moved.entry.kind) == (str(home / "other"), "other",
                                                                "file")  # fmt: skip
    assert (home / "other").read_text() == "inside"
    assert not (home / "sub" / "f").exists()
    (home / "empty").mkdir()
    assert move(home, "sub", "empty").entry.kind == "dir"  # a directory replaces an empty one
    assert not (home / "sub").exists()


def test_move_refuses_a_directory_into_itself_and_a_missing_parent(home: Path) -> None:
    (home / "via").symlink_to("sub")
    for destination in ("sub/inner", "~/sub/a/b", "via/inner"):  # a link: the kernel says so
        with pytest.raises(InvalidParams, match="into itself") as err:
            move(home, "sub", destination)
        assert err.value.field == "$.destination"
    with pytest.raises(FileNotFound, match="makeDir"):
        move(home, "sub/f", "nowhere/f")
    with pytest.raises(FileNotFound):
        move(home, "nothing", "x")
    (home / "full").mkdir()
    (home / "full" / "x").write_text("x")
    for source, destination in (("sub", "full"), ("sub", "via"), ("sub/f", "full")):
        with pytest.raises(WrongFileKind):
            move(home, source, destination)
    assert (home / "sub" / "f").read_text() == "inside"


def test_move_refuses_the_daemons_own_files(home: Path) -> None:
    (home / ".fleet").mkdir()
    (home / ".fleet" / "daemon.lock").write_text("")
    with pytest.raises(InvalidParams, match="daemon's own"):
        move(home, ".fleet", "elsewhere")
    with pytest.raises(InvalidParams, match="daemon's own") as err:
        move(home, "sub/f", ".fleet/daemon.lock")
    assert err.value.field == "$.destination"
    with pytest.raises(InvalidParams, match="home itself"):
        move(home, "~", "sub/home")


# --- a deep listing ----------------------------------------------------------------------------
def test_a_listing_goes_depth_levels_down_each_directory_after_itself(home: Path) -> None:
    for d in ("a/b/c/d", "a/e", "z"):
        (home / d).mkdir(parents=True)
    (home / "a" / "b" / "c" / "d" / "deepest").touch()
    assert listed(home) == ["a", "sub", "z"]
    assert listed(home, depth=2) == ["a", "a/b", "a/e", "sub", "sub/f", "z"]
    assert listed(home, depth=5) == ["a", "a/b", "a/b/c", "a/b/c/d", "a/b/c/d/deepest", "a/e",
                                     "sub", "sub/f", "z"]  # fmt: skip
    assert listed(home, "a", depth=2) == ["b", "b/c", "e"]


def test_a_deep_listing_is_bounded_and_pages_on_from_a_path(home: Path) -> None:
    """``limit`` (at most MAX_DIR_ENTRIES) bounds a deep listing as a flat one; a page ends on a
    path, and the next starts after it at any level: every entry once, in order."""
    for d in range(6):
        for f in range(4):
            (home / f"d{d}" / f"e{f}").mkdir(parents=True)
    whole = listed(home, depth=3)
    assert len(whole) == 6 + 6 * 4 + 2
    pages, after = [], None
    for _ in range(len(whole)):
        page = files.list_dir(str(home), ListDirParams(depth=3, limit=4, after=after))
        pages += [e.name for e in page.entries]
        if not page.truncated:
            break
        assert page.next_after == page.entries[-1].name
        after = page.next_after
    assert pages == whole
    assert listed(home, depth=3, after="d2/e1") == whole[whole.index("d2/e1") + 1 :]
    assert listed(home, depth=3, after="d2/gone") == whole[whole.index("d3") :]


def test_an_entry_names_its_owner_group_and_permissions(home: Path) -> None:
    os.chmod(home / "sub" / "f", 0o640)
    (entry,) = files.list_dir(str(home), ListDirParams(path="sub")).entries
    st = (home / "sub" / "f").stat()
    names = pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name
    assert (entry.owner, entry.group) == names
    assert (entry.permissions, entry.mode) == ("-rw-r-----", 0o640)
