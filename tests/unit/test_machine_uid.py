"""A machine's uid allocation survives what a killed allocation leaves behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from base.atomic import replace_file
from providers.gvisor import ROOT_UID_FILE
from providers.gvisor.fork import UID_FILE
from providers.local import LocalProvider
from providers.sandbox.machine_uid import allocate_uid, give_upper, machine_uid

UIDS = (70000, 70009)


def test_uids_are_distinct_and_kept(tmp_path: Path) -> None:
    root = tmp_path / "machines"
    a, b = machine_uid(root, "m-a", UIDS), machine_uid(root, "m-b", UIDS)
    assert a != b
    assert {a, b} <= set(range(UIDS[0], UIDS[1] + 1))
    assert machine_uid(root, "m-a", UIDS) == a


def test_an_empty_uid_file_stops_no_later_allocation(tmp_path: Path) -> None:
    # A provisioner killed between creating a uid file and writing it left this.
    root = tmp_path / "machines"
    (root / "m-killed").mkdir(parents=True)
    (root / "m-killed" / "uid").write_text("")
    (root / "m-garbled").mkdir()
    (root / "m-garbled" / "uid").write_text("7x")
    assert machine_uid(root, "m-next", UIDS) == UIDS[0]
    # and the machine whose file was left empty gets a uid of its own, not a crash
    assert machine_uid(root, "m-killed", UIDS) == UIDS[0] + 1


def test_a_uid_is_never_given_twice_when_the_range_is_spent(tmp_path: Path) -> None:
    root = tmp_path / "machines"
    for i in range(UIDS[1] - UIDS[0] + 1):
        machine_uid(root, f"m-{i}", UIDS)
    with pytest.raises(RuntimeError, match="FLEET_SANDBOX_UIDS"):
        allocate_uid(root / "m-over" / "uid", root, UIDS)


def test_replace_file_leaves_the_whole_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "pid"
    target.write_text("old")
    replace_file(target, "12345", mode=0o600)
    assert target.read_text() == "12345"
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["pid"]


def test_give_upper_gives_machine_files_and_follows_no_link(tmp_path: Path) -> None:
    upper, canary = tmp_path / "upper", tmp_path / "canary"
    (upper / "opt").mkdir(parents=True)
    canary.write_text("root's")
    written, root_owned = upper / "opt" / "tool", upper / "opt" / "root-file"
    written.write_text("x")
    root_owned.write_text("y")
    (upper / "opt" / "link").symlink_to(canary)
    os.mkfifo(upper / "opt" / "fifo")
    for path in (written, upper / "opt", upper / "opt" / "fifo"):
        os.chown(path, UIDS[0] + 3, UIDS[0] + 3)
    os.chown(upper / "opt" / "link", UIDS[0] + 3, UIDS[0] + 3, follow_symlinks=False)
    give_upper(upper, UIDS[0], UIDS)
    for path in (written, upper / "opt", upper / "opt" / "fifo", upper / "opt" / "link"):
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid) == (UIDS[0], UIDS[0]), path
    assert os.lstat(root_owned).st_uid == 0
    assert (os.stat(canary).st_uid, canary.read_text()) == (0, "root's")


def test_a_uid_kept_by_a_memory_image_is_never_given(tmp_path: Path) -> None:
    # A machine made from a memory image runs as its source's uid (and its root's), which the
    # image keeps beside it (providers/gvisor/fork.py): its source may be long archived.
    local = LocalProvider(data_dir=tmp_path, nats_url="nats://127.0.0.1:4222", environ={},
                          sandbox=False)  # fmt: skip
    memory = local.parts.copies.memory_dir("s-0123456789abcdef")
    memory.mkdir(parents=True)
    (memory / UID_FILE).write_text(str(UIDS[0]))
    (memory / ROOT_UID_FILE).write_text(str(UIDS[0] + 1))
    root = local.machine_dir("m-new").parent
    assert machine_uid(root, "m-new", UIDS) == UIDS[0] + 2
    assert machine_uid(root, "m-next", UIDS) == UIDS[0] + 3
