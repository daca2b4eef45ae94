"""A session's scrollback ring and the records of an attach stream, as pure pieces (with a real
daemon: tests/integration/test_sessions_daemon.py)."""

from __future__ import annotations

import pytest

from contracts.daemon import sessions as ss
from daemon.processes.pty_session import Ring, exit_code


def test_the_ring_keeps_the_newest_bytes_by_absolute_offset() -> None:
    ring = Ring(10)
    ring.write(b"0123456")
    assert (ring.start, ring.end, ring.read(0, 100)) == (0, 7, b"0123456")
    ring.write(b"789abc")
    assert (ring.start, ring.end) == (3, 13)
    assert ring.read(0, 100) == b"3456789abc"  # what is gone reads from the oldest kept
    assert ring.read(10, 2) == b"ab"
    assert ring.read(13, 5) == b""


def test_records_survive_any_split_and_garbage_is_refused() -> None:
    wire = (ss.encode_record(ss.RecordKind.OUTPUT, b"hello")
            + ss.encode_notice(ss.Dropped(bytes=42))
            + ss.encode_record(ss.RecordKind.OUTPUT, b""))  # fmt: skip
    for cut in range(len(wire) + 1):
        reader = ss.RecordReader()
        got = reader.feed(wire[:cut]) + reader.feed(wire[cut:])
        assert [k for k, _ in got] == [ss.RecordKind.OUTPUT, ss.RecordKind.NOTICE,
                                       ss.RecordKind.OUTPUT]  # fmt: skip
        assert got[0][1] == b"hello"
        assert ss.decode_notice(got[1][1]) == ss.Dropped(bytes=42)
    with pytest.raises(ss.RecordError):
        ss.RecordReader().feed(b"\x07\x00\x00\x00\x01x")  # unknown kind
    with pytest.raises(ss.RecordError):
        ss.RecordReader().feed(b"\x00\xff\xff\xff\xff")  # longer than any record may be
    with pytest.raises(ss.RecordError):
        ss.decode_notice(b'{"type":"nope"}')


def test_exit_codes_read_as_a_shell_says_them() -> None:
    assert [exit_code(0), exit_code(3), exit_code(-2), exit_code(-9)] == [0, 3, 130, 137]
