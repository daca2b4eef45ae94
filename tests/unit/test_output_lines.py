"""Output as events (controlplane/events/output_lines.py): lines cut out of pieces of text, batches
at most once per interval and of a capped size, and the trickle that sends them in order and
what is left at its end."""

from __future__ import annotations

import asyncio

import pytest

from controlplane.events.output_lines import Batch, LineBatcher, LineSplitter, OutputTrickle


def test_lines_end_at_any_break_even_one_split_across_pieces() -> None:
    s = LineSplitter()
    assert s.feed("one\ntw") == ["one"]
    assert s.feed("o\r") == []  # may be half of a \r\n
    assert s.feed("\nthree\rfour\r\n\nfi") == ["two", "three", "four", ""]
    assert s.end() == ["fi"]
    assert s.end() == []


def test_an_unended_line_goes_out_in_pieces_of_the_longest_line() -> None:
    s = LineSplitter(max_line=4)
    assert s.feed("abcdefghij") == ["abcd", "efgh"]
    assert s.feed("\n") == ["ij"]


def test_the_first_batch_goes_at_once_then_one_per_interval() -> None:
    b = LineBatcher(interval_s=0.5, max_bytes=1000)
    assert b.wait_s(0.0) is None
    assert b.take(0.0) is None
    b.add("a")
    b.add("b")
    assert b.wait_s(10.0) == 0.0
    assert b.take(10.0) == Batch(["a", "b"], 0)
    b.add("c")
    assert b.wait_s(10.1) == pytest.approx(0.4)
    assert b.take(10.1) is None  # too soon
    b.add("d")
    assert b.take(10.5) == Batch(["c", "d"], 0)
    b.add("e")
    assert b.take(10.6, force=True) == Batch(["e"], 0)  # the end: whatever is left, now
    assert b.empty


def test_a_flood_keeps_the_newest_lines_within_the_cap_and_counts_the_rest() -> None:
    b = LineBatcher(interval_s=0.5, max_bytes=100)
    for n in range(1000):
        b.add(f"line {n:04}")  # 10 bytes with its break
    batch = b.take(0.0)
    assert batch is not None
    assert batch.lines == [f"line {n:04}" for n in range(990, 1000)]
    assert batch.dropped == 990
    b.add("next")
    assert b.take(1.0) == Batch(["next"], 0)  # the count went with the batch that followed it


def test_a_long_line_is_cut_and_sizes_count_bytes() -> None:
    b = LineBatcher(interval_s=0.5, max_bytes=19, max_line=8)
    b.add("é" * 20)  # cut to 7 of them (2 bytes each) and the mark (3): 18 with its break
    b.add("x")
    assert b.take(0.0) == Batch(["x"], 1)  # 18 + 2 > 19: the older line went
    b.add("abcdefghijk")
    assert b.take(1.0) == Batch(["abcdefg…"], 0)


async def test_the_trickle_sends_in_order_and_what_is_left_at_its_end() -> None:
    sent: list[tuple[list[str], int]] = []
    first = asyncio.Event()

    async def send(lines: list[str], dropped: int) -> None:
        sent.append((lines, dropped))
        first.set()

    async with OutputTrickle(send, what="test", interval_s=3600.0, clock=lambda: 0.0) as out:
        out.write("step 1\nstep ")
        await asyncio.wait_for(first.wait(), timeout=5)
        out.write("2\n")
        out.line("step 3")
        out.write("no line break at the end")
        assert sent == [(["step 1"], 0)]  # the next batch waits for the interval
    assert sent == [(["step 1"], 0), (["step 2", "step 3", "no line break at the end"], 0)]


async def test_a_batch_that_cannot_be_sent_does_not_stop_the_others() -> None:
    sent: list[list[str]] = []
    failed = asyncio.Event()

    async def send(lines: list[str], dropped: int) -> None:
        if not failed.is_set():
            failed.set()
            raise ConnectionError("no bus")
        sent.append(lines)

    async with OutputTrickle(send, what="test", interval_s=0.0) as out:
        out.line("lost")
        await asyncio.wait_for(failed.wait(), timeout=5)
        out.line("sent")
    assert sent == [["sent"]]


async def test_stdout_and_stderr_are_cut_into_lines_each_on_its_own() -> None:
    sent: list[str] = []

    async def send(lines: list[str], dropped: int) -> None:
        sent.extend(lines)

    async with OutputTrickle(send, what="test", interval_s=3600.0, clock=lambda: 0.0) as out:
        out.write("compil", "stdout")
        out.write("warning: x\n", "stderr")  # a whole line between the halves of another
        out.write("ing\nlast", "stdout")
        out.write("no break", "stderr")
    assert sent == ["warning: x", "compiling", "last", "no break"]
