"""The daemon's file tools (read, list, stat, remove) on a real file system: what a hostile user
of the platform, or code on the machine racing the daemon, would try to reach outside the home
with, and what must still work inside it."""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from contracts.daemon.files import ListDirParams, ReadFileParams, RemoveFileParams, StatParams
from contracts.daemon.rpc import WriteFileParams
from contracts.errors import (
    BadPath,
    FileNotFound,
    FileTooLarge,
    FleetError,
    InvalidParams,
    NotText,
    WrongFileKind,
)
from daemon.files import tools as files
from daemon.processes import tools

LIMIT = 64 * 1024


def read(home: Path, path: str, encoding: str = "utf-8") -> str:
    params = ReadFileParams(path=path, encoding=encoding)  # type: ignore[arg-type]
    return files.read_file(str(home), params, LIMIT).content


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "home" / "sub").mkdir(parents=True)
    (tmp_path / "home" / "sub" / "f").write_text("inside")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "f").write_text("SECRET")
    return tmp_path / "home"


# --- attacks ------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["~/../outside/f", "sub/../../outside/f", "../outside/f"])
def test_dotdot_out_is_refused_everywhere(home: Path, path: str) -> None:
    for call in _every_tool(home, path):
        with pytest.raises(InvalidParams, match="not a file in the machine's home") as err:
            call()
        assert err.value.field == "$.path"
    assert (home.parent / "outside" / "f").read_text() == "SECRET"


def test_an_absolute_path_outside_is_refused_and_one_inside_works(home: Path) -> None:
    for call in _every_tool(home, str(home.parent / "outside" / "f")):
        with pytest.raises(InvalidParams):
            call()
    assert read(home, str(home / "sub" / "f")) == "inside"


@pytest.mark.parametrize("path", ["sub/a\0b", "~/\0", "\0/etc/passwd"])
def test_a_nul_byte_is_invalid_params(home: Path, path: str) -> None:
    for call in _every_tool(home, path):
        with pytest.raises(InvalidParams, match="NUL"):
            call()


@pytest.mark.parametrize(
    ("link", "to", "path"),
    [
        ("out", "{outside}", "out/f"),  # an absolute link to a directory outside
        ("f-link", "{outside}/f", "f-link"),  # a file link out, as the last component
        ("sub/rel", "../../outside", "sub/rel/f"),  # a relative link climbing out
        ("hop", "sub/deeper", "hop/f"),  # a chain: inside, to a link that leaves
    ],
)
def test_links_out_are_refused(home: Path, link: str, to: str, path: str) -> None:
    (home / "sub" / "deeper").symlink_to(home.parent / "outside")
    (home / link).symlink_to(to.format(outside=home.parent / "outside"))
    with pytest.raises(InvalidParams, match="leads out"):
        read(home, path)
    with pytest.raises(InvalidParams, match="leads out"):
        files.list_dir(str(home), ListDirParams(path=path.rpartition("/")[0] or link))
    if "/" in path:  # through a link on the way: refused
        with pytest.raises(InvalidParams, match="leads out"):
            files.remove_file(str(home), RemoveFileParams(path=path, recursive=True))
    else:  # the link itself is what goes, never what it points to
        assert files.remove_file(str(home), RemoveFileParams(path=path, recursive=True)).removed
        assert not (home / link).is_symlink()
    assert (home.parent / "outside" / "f").read_text() == "SECRET"


def test_a_link_swapped_in_while_reading_never_reads_outside(home: Path) -> None:
    """Code on the machine flips ``~/d`` between a directory and a link out, as fast as it can,
    while the daemon reads ``d/f`` and lists ``d``: a check-then-open would read the secret.
    It runs until both states were met many times (reads that landed inside, reads refused)."""
    (home / "d").mkdir()
    (home / "d" / "f").write_text("inside")
    seen, refused, landed = set[str](), 0, 0
    with _flipping(home / "d", home.parent / "outside"):
        deadline = time.monotonic() + 20
        while (refused < 50 or landed < 50) and time.monotonic() < deadline:
            try:
                seen.add(read(home, "d/f"))
                seen.update(
                    e.name for e in files.list_dir(str(home), ListDirParams(path="d")).entries
                )
                landed += 1
            except FleetError:  # refused, or not there this instant: both fine
                refused += 1
    assert (refused, landed) >= (50, 50), "the race never happened: the test proves nothing"
    assert seen == {"inside", "f"}


def test_a_link_swapped_in_while_removing_never_removes_outside(home: Path) -> None:
    victim = home.parent / "outside" / "keep"
    (home / "d").mkdir()
    removed, refused = 0, 0
    with _flipping(home / "d", home.parent / "outside"):
        deadline = time.monotonic() + 20
        while (refused < 50 or removed < 50) and time.monotonic() < deadline:
            victim.write_text("keep me")
            for where in ("d", "d.away"):  # where the directory is this instant
                with contextlib.suppress(OSError):
                    (home / where / "keep").write_text("inside")
            try:
                removed += files.remove_file(str(home), RemoveFileParams(path="d/keep")).removed
            except FleetError:
                refused += 1
            assert victim.exists()
    assert (refused, removed) >= (50, 50), "the race never happened: the test proves nothing"


def test_a_link_swapped_in_while_writing_never_writes_outside(home: Path) -> None:
    """tool.writeFile under the same race (its check-then-open predecessor wrote files outside
    the home this way, several times a second)."""
    (home / "d").mkdir()
    outside = home.parent / "outside"
    wrote, refused = 0, 0
    with _flipping(home / "d", outside):
        deadline = time.monotonic() + 20
        while (refused < 50 or wrote < 50) and time.monotonic() < deadline:
            try:
                tools.write_file(home, WriteFileParams(path="d/planted", content="x"))
                wrote += 1
            except FleetError:
                refused += 1
            assert not (outside / "planted").exists()
    assert (refused, wrote) >= (50, 50), "the race never happened: the test proves nothing"


_FLIPPER = """
import os, shutil, signal, sys
d, away, outside = sys.argv[1:4]
count = 0
def done(*_):
    print(count, flush=True)
    os._exit(0)
signal.signal(signal.SIGTERM, done)
print("go", flush=True)
while True:
    try:
        os.rename(d, away)
        os.symlink(outside, d)
        os.unlink(d)
        os.rename(away, d)
    except OSError:  # someone made a d while it was away: theirs goes, ours comes back
        while os.path.lexists(away):
            if os.path.islink(d):
                os.unlink(d)
            shutil.rmtree(d, ignore_errors=True)
            try:
                os.rename(away, d)
            except OSError:
                pass
    count += 1
    for _ in range(count % 5000):  # stay a directory for a while too, longer and shorter
        pass
"""


@contextlib.contextmanager
def _flipping(d: Path, outside: Path) -> Iterator[Callable[[], int]]:
    """Another process (as code on the machine would be) swaps the directory ``d`` for a link
    to ``outside`` and back, in a loop; yields how many swaps it made (known once it ended)."""
    away = d.with_name(d.name + ".away")
    proc = subprocess.Popen([sys.executable, "-c", _FLIPPER, str(d), str(away), str(outside)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline() == "go\n"
    count = [0]
    try:
        yield lambda: count[0]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
        count[0] = int(out.strip() or 0)


def _every_tool(home: Path, path: str) -> list[Callable[[], object]]:
    h = str(home)
    return [
        lambda: files.read_file(h, ReadFileParams(path=path), LIMIT),
        lambda: files.list_dir(h, ListDirParams(path=path)),
        lambda: files.stat_path(h, StatParams(path=path)),
        lambda: files.remove_file(h, RemoveFileParams(path=path, recursive=True)),
    ]


# --- what must work -----------------------------------------------------------------------------
def test_links_that_stay_inside_are_followed(home: Path) -> None:
    (home / "abs").symlink_to(home / "sub")
    (home / "sub" / "rel").symlink_to("../sub/f")
    assert read(home, "abs/f") == "inside"
    assert read(home, "~/sub/rel") == "inside"
    assert [e.name for e in files.list_dir(str(home), ListDirParams(path="abs")).entries] == [
        "f", "rel"]  # fmt: skip
    linked = home.parent / "linked-home"
    linked.symlink_to(home)  # a home reached through a link
    assert read(linked, "abs/f") == "inside"


def test_read_text_and_bytes(home: Path) -> None:
    (home / "bin").write_bytes(b"\xff\x00ab")
    with pytest.raises(NotText, match="base64"):
        read(home, "bin")
    assert base64.b64decode(read(home, "bin", "base64")) == b"\xff\x00ab"
    got = files.read_file(str(home), ReadFileParams(path="sub/f"), LIMIT)
    assert (got.path, got.content, got.size, got.mode) == (str(home / "sub" / "f"), "inside", 6,
                                                           0o644 & ~_umask())  # fmt: skip


def test_a_file_bigger_than_one_message_says_to_stream_it(home: Path) -> None:
    (home / "big").write_bytes(b"x" * (LIMIT + 1))
    with pytest.raises(FileTooLarge, match="fleet machines cp") as err:
        read(home, "big")
    assert err.value.data == {"size": LIMIT + 1, "limit": LIMIT}
    (home / "escapes").write_text("\x01" * (LIMIT // 2))  # fits, but not once JSON-escaped
    with pytest.raises(FileTooLarge):
        read(home, "escapes")


def test_what_is_not_a_regular_file_is_not_read(home: Path) -> None:
    os.mkfifo(home / "fifo")  # an open would block forever
    with pytest.raises(WrongFileKind) as err:
        read(home, "fifo")
    assert err.value.data == {"kind": "other"}
    with pytest.raises(WrongFileKind):
        read(home, "sub")
    with pytest.raises(FileNotFound):
        read(home, "nothing")
    with pytest.raises(WrongFileKind):
        files.list_dir(str(home), ListDirParams(path="sub/f"))


def test_list_and_stat(home: Path) -> None:
    (home / "sub" / "link").symlink_to("f")
    (home / "sub" / "dir").mkdir()
    listed = files.list_dir(str(home), ListDirParams(path="sub", limit=2))
    assert [(e.name, e.kind) for e in listed.entries] == [("dir", "dir"), ("f", "file")]
    assert listed.truncated
    st = files.stat_path(str(home), StatParams(path="~/sub/link"))
    assert (st.path, st.kind, st.target) == (str(home / "sub" / "link"), "symlink", "f")
    assert [e.name for e in files.list_dir(str(home), ListDirParams()).entries] == ["sub"]


def test_remove(home: Path) -> None:
    h = str(home)
    (home / "sub" / "link").symlink_to(home.parent / "outside" / "f")
    assert files.remove_file(h, RemoveFileParams(path="sub/link")).removed  # the link only
    assert (home.parent / "outside" / "f").read_text() == "SECRET"
    assert not files.remove_file(h, RemoveFileParams(path="sub/link")).removed
    with pytest.raises(WrongFileKind, match="recursive"):
        files.remove_file(h, RemoveFileParams(path="sub"))
    assert files.remove_file(h, RemoveFileParams(path="sub", recursive=True)).removed
    assert list(home.iterdir()) == []
    with pytest.raises(InvalidParams, match="home itself"):
        files.remove_file(h, RemoveFileParams(path="~", recursive=True))
    (home / ".fleet").mkdir(parents=True)
    for path in ("~/.fleet", ".fleet/daemon.state.json", ".fleet/daemon.lock"):
        with pytest.raises(InvalidParams, match="daemon's own"):
            files.remove_file(h, RemoveFileParams(path=path, recursive=True))


def _umask() -> int:
    old = os.umask(0)
    os.umask(old)
    return old


def test_a_path_the_file_system_cannot_use_is_a_named_400(home: Path) -> None:
    """A name over 255 bytes or a link loop: BadPath (400) naming which, from every tool
    (read, list, stat, remove, write, a command's cwd), never an OS error's traceback; a
    component that is a file: WrongFileKind from each (writeFile keeps its ToolError)."""
    (home / "file").write_text("x")
    (home / "loop").symlink_to("loop")
    cases = {"a" * 300: "nameTooLong", "sub/" + "é" * 200: "nameTooLong",
             "loop/x": "linkLoop", "file/x": None}  # fmt: skip
    for path, reason in cases.items():
        for call in _path_tools(home, path, write=reason is not None):
            with pytest.raises(BadPath if reason else WrongFileKind) as refused:
                call()
            assert refused.value.data is not None
            assert refused.value.data.get("reason") == reason, (path, refused.value.message)
            assert refused.value.http_status == (400 if reason else 409)
            assert len(refused.value.message) < 300  # the path is shown, cut short


def _path_tools(home: Path, path: str, *, write: bool) -> list[Callable[[], object]]:
    calls = [*_every_tool(home, path), lambda: tools.working_dir(home, path)]
    if write:
        calls.append(lambda: tools.write_file(home, WriteFileParams(path=path, content="x")))
    return calls


def test_a_listing_is_cut_to_its_room_and_pages_on(home: Path) -> None:
    """Past ``room`` bytes of entries (what one answer carries) or ``limit``, a page stops,
    says so and names where the next starts; paging gives every name once."""
    big = home / "big"
    big.mkdir()
    names = sorted(f"{i:04d}" + "x" * 200 for i in range(300))
    for name in names:
        (big / name).touch()
    seen, after = [], None
    for _ in range(len(names)):
        page = files.list_dir(str(home), ListDirParams(path="big", after=after), room=8192)
        assert len(page.entries) < 40  # 8 KiB of 300-byte entries
        seen += [e.name for e in page.entries]
        if not page.truncated:
            break
        after = page.next_after
    assert seen == names
    limited = files.list_dir(str(home), ListDirParams(path="big", limit=5, after=names[0]))
    assert [e.name for e in limited.entries] == names[1:6]
    assert (limited.truncated, limited.next_after) == (True, names[5])
