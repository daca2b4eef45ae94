"""Root's operations on a machine's home (base/hostile_fs.py) against what a hostile machine
puts there: a link, a FIFO, a device node, a huge file, a directory swapped with a link in a
tight loop. A canary directory of root-owned files on the host must stay as it was, and each
operation must end promptly in bounded memory (each risky one runs in a bounded child)."""

from __future__ import annotations

import math
import os
import stat
import time
from pathlib import Path

import pytest

from base import hostile_fs
from base.hostile_fs import Refused
from providers.sandbox import give_home
from tests.hostile import KINDS, Canary, bounded, plant, swapping

UID = 54_321
#: The provider's read of a machine's lock, as root (local.running_pid's), in a child.
HOLDER = "import sys; from pathlib import Path; from base.lockfile import holder_pid\n" \
         "n = int(sys.argv[2]); found = {holder_pid(Path(sys.argv[1])) for _ in range(n)}\n" \
         "print(sorted(found, key=str))"  # fmt: skip


@pytest.fixture
def canary(tmp_path: Path) -> Canary:
    return Canary(tmp_path / "host-secrets")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "machines" / "m1" / "home"
    (home / ".fleet").mkdir(parents=True)
    return home


def holder(home: Path, times: int = 1) -> str:
    return bounded(HOLDER, str(home), str(times)).strip()


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "swap"])
def test_lock_read_refuses_what_is_not_a_small_regular_file(
    kind: str, home: Path, canary: Canary
) -> None:
    plant(kind, home / ".fleet" / "daemon.lock", canary)
    assert holder(home) == "[None]"  # ended, in bounded memory, found no holder
    assert canary.changed() == {}


def test_lock_read_follows_no_link_on_the_way(home: Path, canary: Canary) -> None:
    (home / ".fleet").rmdir()
    (home / ".fleet").symlink_to(canary.root)  # the canary holds a lock naming a live pid
    assert holder(home) == "[None]"


def test_lock_read_while_the_dir_is_swapped_with_a_link(home: Path, canary: Canary) -> None:
    (home / "elsewhere").symlink_to(canary.root)
    with swapping(home / ".fleet", home / "elsewhere"):
        assert holder(home, times=3000) == "[None]"


def test_a_real_lock_is_still_read(home: Path) -> None:
    (home / ".fleet" / "daemon.lock").write_text(f"{os.getpid()}\n")
    assert holder(home) == f"[{os.getpid()}]"


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "swap"])
def test_give_home_gives_the_home_and_nothing_else(kind: str, home: Path, canary: Canary) -> None:
    (home / "own.txt").write_text("the machine's")
    plant(kind, home / "dir" / "it", canary)
    give_home(home, UID)
    assert canary.changed() == {}
    assert (home / "own.txt").stat().st_uid == UID
    it = (home / "dir" / "it").lstat()
    # A device node is never given to a machine (it could not have made one itself).
    assert it.st_uid == (0 if kind == "device" else UID)


def test_give_home_while_a_dir_is_swapped_with_a_link(home: Path, canary: Canary) -> None:
    swapped = home / "d"
    for i in range(300):
        (swapped / f"sub{i % 5}").mkdir(parents=True, exist_ok=True)
        (swapped / f"sub{i % 5}" / f"f{i}").write_text("x")
    (home / "l").symlink_to(canary.root)
    with swapping(swapped, home / "l"):
        for _ in range(40):
            give_home(home, UID)
    assert canary.changed() == {}
    give_home(home, UID)  # once the loop is over, all of the machine's tree is its own
    assert {p.lstat().st_uid for p in swapped.rglob("*")} == {UID}


def test_give_home_stops_at_its_depth(home: Path) -> None:
    deep = home.joinpath(*["d"] * (hostile_fs.MAX_DEPTH + 2))
    deep.mkdir(parents=True)
    give_home(home, UID)
    assert home.joinpath(*["d"] * hostile_fs.MAX_DEPTH).stat().st_uid == UID
    assert deep.stat().st_uid == 0  # not entered: past the depth a walk holds descriptors for


def test_read_file_is_only_below_its_top(home: Path) -> None:
    for rel in ("../home/x", "/etc/passwd", "", "a/../../b"):
        with pytest.raises(Refused):
            hostile_fs.read_file(home, rel, 10)
    (home / "big").write_bytes(b"x" * 11)
    with pytest.raises(Refused, match="over 10 bytes"):
        hostile_fs.read_file(home, "big", 10)
    assert hostile_fs.read_file(home, "./big", 11) == b"x" * 11


def test_chown_tree_counts_what_it_gave(home: Path) -> None:
    (home / "a").write_text("1")
    (home / "link").symlink_to("/etc/passwd")
    os.mkfifo(home / "fifo")
    assert hostile_fs.chown_tree(home, UID, UID) == 5  # home, .fleet, a, link, fifo
    assert hostile_fs.chown_tree(home, UID, UID) == 0
    assert stat.S_ISLNK((home / "link").lstat().st_mode)
    assert Path("/etc/passwd").stat().st_uid == 0


def test_a_disk_walk_stops_at_its_bound_of_entries(home: Path) -> None:
    """A home of more entries than a walk may count (a machine makes as many as it likes): the
    walk stops at the bound and says so; one at the bound is whole."""
    bound = 50
    files = home / "many"
    files.mkdir()
    for n in range(bound - 2):  # with .fleet and many/: the bound exactly
        (files / str(n)).write_bytes(b"x")
    whole = hostile_fs.disk_use(home, max_entries=bound, until=math.inf)
    assert (whole.entries, whole.complete) == (bound, True)
    assert whole.bytes >= (bound - 2) * 512
    (files / "one-past").write_bytes(b"x")
    past = hostile_fs.disk_use(home, max_entries=bound, until=math.inf)
    assert (past.entries, past.complete) == (bound, False)  # at least what it saw


def test_a_disk_walk_stops_at_its_time(home: Path) -> None:
    (home / "a").write_bytes(b"x")
    late = hostile_fs.disk_use(home, max_entries=1000, until=time.monotonic())
    assert (late.entries, late.complete) == (0, False)
