"""base/wait.py: the one synchronous poll, on a clock of the test's own (no real wait)."""

from __future__ import annotations

import pytest

from base.wait import wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def test_the_first_true_answer_ends_the_wait_at_once() -> None:
    clock, answers = Clock(), iter([0, 0, 7, 8])
    got = wait_until(lambda: next(answers), within_s=1.0, every_s=0.1, clock=lambda: clock.now,
                     sleep=clock.sleep)  # fmt: skip
    assert (got, clock.slept) == (7, [0.1, 0.1])


def test_past_the_time_the_last_false_answer_is_returned() -> None:
    clock, asked = Clock(), []

    def never() -> str:
        asked.append(clock.now)
        return ""

    assert wait_until(never, within_s=0.3, every_s=0.1, clock=lambda: clock.now,
                      sleep=clock.sleep) == ""  # fmt: skip
    assert asked[0] == 0.0  # asked at once
    assert asked[-1] > 0.3  # and once past the time
    assert len(asked) == len(clock.slept) + 1


def test_no_time_at_all_still_asks_once() -> None:
    clock = Clock()
    assert wait_until(lambda: True, within_s=-1.0, every_s=0.1, clock=lambda: clock.now,
                      sleep=clock.sleep)  # fmt: skip
    assert clock.slept == []


def test_what_the_question_raises_ends_the_wait() -> None:
    def dead() -> bool:
        raise RuntimeError("the server exited")

    with pytest.raises(RuntimeError, match="exited"):
        wait_until(dead, within_s=10.0, every_s=0.1)
