"""contracts.daemon.cron: the crontab(5) parser and next_run, shared by the gateway and the
daemon."""

from __future__ import annotations

from datetime import datetime

import pytest

from contracts.daemon.cron import Schedule, next_run, parse_schedule


def runs(spec: str, after: datetime, count: int) -> list[datetime]:
    schedule = parse_schedule(spec)
    out: list[datetime] = []
    for _ in range(count):
        when = next_run(schedule, after)
        assert when is not None
        out.append(when)
        after = when
    return out


def test_every_field_is_parsed() -> None:
    s = parse_schedule("5 4 3 2 1")
    assert [set(f) for f in (s.minutes, s.hours, s.days, s.months, s.weekdays)] == [
        {5},
        {4},
        {3},
        {2},
        {1},
    ]
    assert s.days_restricted
    assert s.weekdays_restricted


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("*", set(range(60))),
        ("7", {7}),
        ("1,3,5", {1, 3, 5}),
        ("10-13", {10, 11, 12, 13}),
        ("*/15", {0, 15, 30, 45}),
        ("10-20/5", {10, 15, 20}),
        ("50/4", {50, 54, 58}),  # N/step: from N to the end of the range
        ("0-4,30,*/20", {0, 1, 2, 3, 4, 20, 30, 40}),
    ],
)
def test_minute_lists_ranges_and_steps(field: str, expected: set[int]) -> None:
    assert parse_schedule(f"{field} * * * *").minutes == expected


@pytest.mark.parametrize(
    ("spec", "months", "weekdays"),
    [
        ("0 0 * jan *", {1}, set(range(7))),
        ("0 0 * JAN-Mar *", {1, 2, 3}, set(range(7))),
        ("0 0 * dec,feb *", {2, 12}, set(range(7))),
        ("0 0 * * mon-fri", set(range(1, 13)), {1, 2, 3, 4, 5}),
        ("0 0 * * SUN", set(range(1, 13)), {0}),
        ("0 0 * * 7", set(range(1, 13)), {0}),  # 7 is Sunday too
        ("0 0 * * 5-7", set(range(1, 13)), {5, 6, 0}),
    ],
)
def test_month_and_weekday_names(spec: str, months: set[int], weekdays: set[int]) -> None:
    s = parse_schedule(spec)
    assert (set(s.months), set(s.weekdays)) == (months, weekdays)


@pytest.mark.parametrize(
    ("macro", "spec"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("  @DAILY ", "0 0 * * *"),
    ],
)
def test_macros(macro: str, spec: str) -> None:
    assert parse_schedule(macro) == parse_schedule(spec)


def test_next_run_is_strictly_after_and_on_the_minute() -> None:
    every_minute = parse_schedule("* * * * *")
    assert next_run(every_minute, datetime(2024, 5, 1, 12, 0, 0)) == datetime(2024, 5, 1, 12, 1)
    assert next_run(every_minute, datetime(2024, 5, 1, 12, 0, 59, 999)) == datetime(
        2024, 5, 1, 12, 1
    )


def test_next_run_rolls_over_hours_days_months_and_years() -> None:
    assert runs("30 23 * * *", datetime(2024, 12, 31, 23, 30), 1) == [datetime(2025, 1, 1, 23, 30)]
    assert runs("0 0 1 1 *", datetime(2024, 6, 1), 2) == [
        datetime(2025, 1, 1),
        datetime(2026, 1, 1),
    ]
    assert runs("*/20 9-10 * * *", datetime(2024, 3, 3, 10, 45), 3) == [
        datetime(2024, 3, 4, 9, 0),
        datetime(2024, 3, 4, 9, 20),
        datetime(2024, 3, 4, 9, 40),
    ]


def test_feb_29_waits_for_a_leap_year() -> None:
    assert runs("0 12 29 2 *", datetime(2024, 3, 1), 2) == [
        datetime(2028, 2, 29, 12),
        datetime(2032, 2, 29, 12),
    ]


@pytest.mark.parametrize("spec", ["0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6,9,11 *"])
def test_a_schedule_that_never_matches_has_no_next_run(spec: str) -> None:
    assert next_run(parse_schedule(spec), datetime(2024, 1, 1)) is None


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # 2024-09-13 is a Friday; both restricted: the 13th OR any Friday.
    assert runs("0 0 13 * fri", datetime(2024, 9, 1), 4) == [
        datetime(2024, 9, 6),
        datetime(2024, 9, 13),
        datetime(2024, 9, 20),
        datetime(2024, 9, 27),
    ]
    assert runs("0 0 13 * fri", datetime(2024, 10, 4), 2) == [
        datetime(2024, 10, 11),
        datetime(2024, 10, 13),  # a Sunday, but the 13th
    ]


def test_only_the_restricted_day_field_counts() -> None:
    assert runs("0 0 13 * *", datetime(2024, 9, 1), 2) == [
        datetime(2024, 9, 13),
        datetime(2024, 10, 13),
    ]
    assert runs("0 0 * * fri", datetime(2024, 9, 1), 2) == [
        datetime(2024, 9, 6),
        datetime(2024, 9, 13),
    ]
    # A day field starting with "*" ("*/2") is unrestricted, as in cron: both must match.
    assert runs("0 0 */2 * mon", datetime(2024, 9, 1), 2) == [
        datetime(2024, 9, 9),
        datetime(2024, 9, 23),
    ]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("60 * * * *", "minute"),
        ("5-1 * * * *", "minute"),
        ("*/0 * * * *", "minute"),
        ("x * * * *", "minute"),
        ("1-x * * * *", "minute"),
        ("-1 * * * *", "minute"),
        ("* 24 * * *", "hour"),
        ("* * 0 * *", "day of month"),
        ("* * 32 * *", "day of month"),
        ("* * * 13 *", "month"),
        ("* * * foo *", "month"),
        ("* * * * 8", "day of week"),
        ("* * * * funday", "day of week"),
        ("* * * *", "five fields"),
        ("* * * * * *", "five fields"),
        ("", "five fields"),
        ("@reboot", "five fields"),
    ],
)
def test_bad_schedules_name_the_field(spec: str, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        parse_schedule(spec)


def test_schedule_is_a_value() -> None:
    assert isinstance(parse_schedule("@daily"), Schedule)
    assert parse_schedule("@weekly") == parse_schedule("0 0 * * 7")
