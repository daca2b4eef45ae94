"""tool.writeFile's confinement to the home, on a real file system: what a hostile platform
user would try (links planted by an earlier command, chains of them, ``..``), and what must
still work (links that stay inside, a home reached through a link)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from contracts.daemon.rpc import WriteFileParams
from contracts.errors import InvalidParams
from daemon.processes import tools


def write(home: Path, path: str) -> str:
    params = WriteFileParams(path=path, content="owned", mode=0o600)
    return tools.write_file(home, params, tools.current_umask()).path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "home" / "sub").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    return tmp_path / "home"


@pytest.mark.parametrize(
    ("link", "path"),
    [
        ("out", "~/out/planted"),  # a directory link in the middle
        ("out", "out/deeper/planted"),  # ... with a directory that does not exist yet below it
        ("sub/out", "~/sub/out/planted"),  # a link further down
    ],
)
def test_a_directory_link_out_is_refused(home: Path, link: str, path: str) -> None:
    (home / link).symlink_to(home.parent / "outside")
    with pytest.raises(InvalidParams, match="leads out"):
        write(home, path)
    assert list((home.parent / "outside").iterdir()) == []


def test_a_file_link_out_is_refused(home: Path) -> None:
    victim = home.parent / "outside" / "victim"
    victim.write_text("safe")
    (home / ".bashrc").symlink_to(victim)
    with pytest.raises(InvalidParams, match="leads out"):
        write(home, "~/.bashrc")
    assert victim.read_text() == "safe"


def test_a_chain_of_links_that_ends_outside_is_refused(home: Path) -> None:
    (home / "sub" / "hop").symlink_to(home.parent / "outside")
    (home / "first").symlink_to(home / "sub" / "hop")  # inside, to a link that leaves
    with pytest.raises(InvalidParams, match="leads out"):
        write(home, "~/first/planted")
    assert list((home.parent / "outside").iterdir()) == []


def test_dotdot_and_absolute_paths_out_are_refused(home: Path) -> None:
    for path in ("~/../outside/x", "sub/../../outside/x", str(home.parent / "outside" / "x")):
        with pytest.raises(InvalidParams, match="not a file in the machine's home"):
            write(home, path)
    with pytest.raises(InvalidParams):
        write(home, "~")


def test_links_that_stay_inside_and_a_linked_home_still_work(home: Path, tmp_path: Path) -> None:
    (home / "here").symlink_to(home / "sub")
    assert write(home, "~/here/file") == str(home / "here" / "file")
    assert (home / "sub" / "file").read_text() == "owned"
    linked = tmp_path / "linked-home"
    linked.symlink_to(home)
    assert write(linked, "~/sub/other") == os.path.join(linked, "sub", "other")
    assert (home / "sub" / "other").read_text() == "owned"


def test_the_fixed_temp_name_is_never_followed_or_reused(home: Path) -> None:
    """The temporary file is created at one fixed name when it is free: a link planted there
    (to a file outside) is neither followed nor removed, and a file left there is not reused;
    the write goes through a random name instead, and lands whole."""
    victim = home.parent / "outside" / "victim"
    victim.write_text("untouched")
    (home / "sub" / ".f.fleet-tmp").symlink_to(victim)
    (home / "sub" / ".g.fleet-tmp").write_text("leftover")
    for name in ("f", "g"):
        assert write(home, f"sub/{name}") == str(home / "sub" / name)
        assert (home / "sub" / name).read_text() == "owned"
        assert not (home / "sub" / name).is_symlink()
    assert victim.read_text() == "untouched"
    assert (home / "sub" / ".f.fleet-tmp").is_symlink()
    assert (home / "sub" / ".g.fleet-tmp").read_text() == "leftover"
    left = sorted(p.name for p in (home / "sub").iterdir())
    assert left == [".f.fleet-tmp", ".g.fleet-tmp", "f", "g"]  # no temp file of ours left


@pytest.mark.parametrize("path", ["sub/a\0b", "~/\0", "\0/etc/passwd"])
def test_a_nul_in_the_path_is_invalid_params_naming_the_field(home: Path, path: str) -> None:
    """Not a crash (-32603): lstat and open raise ValueError on a NUL."""
    with pytest.raises(InvalidParams, match="NUL") as err:
        write(home, path)
    assert err.value.to_wire()["data"]["field"] == "$.path"


@pytest.mark.parametrize(
    "path",
    ["sub//x", "./sub/x", "sub/./x", "sub/x/", "sub/../sub/x", "~/sub//x", "~/./x", "sub/x/."],
)
def test_paths_normpath_would_change_land_where_it_says(home: Path, path: str) -> None:
    """Plain relative paths skip normpath; every other form still goes through it."""
    import posixpath

    expected = posixpath.normpath(posixpath.join(home, path[2:] if path[:1] == "~" else path))
    assert write(home, path) == expected
    assert Path(expected).read_text() == "owned"
