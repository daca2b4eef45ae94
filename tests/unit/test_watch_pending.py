"""A watch's held events (daemon/files/watches.py ``Pending``) and the kernel's records
(daemon/files/inotify.py ``parse``): a burst is bounded, a repeat merged only into its path's last
event, and what was left out said once, with its count."""

from __future__ import annotations

import struct

from contracts.daemon.watch import FileEvent
from daemon.files.inotify import IN_CREATE, IN_ISDIR, IN_Q_OVERFLOW, RawEvent, parse
from daemon.files.watches import Pending


def ev(kind: str, path: str) -> FileEvent:
    return FileEvent(type=kind, path=path)  # type: ignore[arg-type]


def test_a_repeat_merges_into_its_paths_last_event_only() -> None:
    p = Pending()
    for e in (ev("write", "/a"), ev("write", "/a"), ev("create", "/b"), ev("write", "/a")):
        p.add(e)
    assert p.take("/") == [ev("write", "/a"), ev("create", "/b")]
    # Another kind in between is kept: the order of a path's changes is its state.
    for e in (ev("create", "/a"), ev("remove", "/a"), ev("create", "/a")):
        p.add(e)
    assert p.take("/") == [ev("create", "/a"), ev("remove", "/a"), ev("create", "/a")]


def test_past_the_bound_events_are_counted_and_said_once_after_what_is_held() -> None:
    p = Pending(limit=3)
    for n in range(5):
        p.add(ev("create", f"/f{n}"))
    assert p.ready.is_set()
    overflow = FileEvent(type="overflow", path="/w", is_dir=True, dropped=2)
    assert p.take("/w") == [ev("create", "/f0"), ev("create", "/f1"), ev("create", "/f2"), overflow]
    assert not p.ready.is_set()
    p.add(ev("create", "/f9"))
    assert p.take("/w") == [ev("create", "/f9")]  # the count started again


def test_the_kernels_overflow_is_said_without_a_count() -> None:
    p = Pending()
    p.add(FileEvent(type="overflow", path="/w", is_dir=True))
    p.add(FileEvent(type="overflow", path="/w", is_dir=True))
    assert p.take("/w") == [FileEvent(type="overflow", path="/w", is_dir=True, dropped=0)]


def test_records_are_parsed_with_their_names_unpadded() -> None:
    def record(wd: int, mask: int, cookie: int, name: bytes) -> bytes:
        padded = name + b"\0" * (16 - len(name)) if name else b""
        return struct.pack("iIII", wd, mask, cookie, len(padded)) + padded

    data = record(1, IN_CREATE, 0, b"a.txt") + record(2, IN_CREATE | IN_ISDIR, 7, b"\xffd")
    data += record(-1, IN_Q_OVERFLOW, 0, b"")
    assert list(parse(data)) == [
        RawEvent(1, IN_CREATE, 0, "a.txt"),
        RawEvent(2, IN_CREATE | IN_ISDIR, 7, "\udcffd"),  # kept as os.fsdecode keeps bytes
        RawEvent(-1, IN_Q_OVERFLOW, 0, ""),
    ]
