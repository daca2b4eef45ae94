"""crontab(5) schedules: parse five fields, find the next time they match. Pure functions.

Lives in contracts because both sides need it: the gateway rejects a bad schedule when it is
set (naming the field), and the daemon's scheduler runs the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
#: (name, low, high, names): names map to low, low+1, ...
_FIELDS: tuple[tuple[str, int, int, tuple[str, ...]], ...] = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
#: No schedule that can match waits longer than this (Feb 29 on a Monday: 28 years at most).
_SEARCH_DAYS = 366 * 29


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    #: crontab(5): when both day fields are restricted, a day matching either one runs.
    days_restricted: bool
    weekdays_restricted: bool

    def day_matches(self, when: datetime) -> bool:
        if when.month not in self.months:
            return False
        dom = when.day in self.days
        dow = (when.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow


def parse_schedule(text: str) -> Schedule:
    """Raise ValueError naming the bad part; accept @hourly-style macros."""
    spec = _MACROS.get(text.strip().lower(), text)
    parts = spec.split()
    if len(parts) != 5:
        raise ValueError(
            f"a schedule has five fields (minute hour day month weekday), got {len(parts)}: "
            f"{text!r}"
        )
    sets = [_parse_field(p, *f) for p, f in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in sets[4])  # 7 is Sunday too
    return Schedule(
        minutes=sets[0],
        hours=sets[1],
        days=sets[2],
        months=sets[3],
        weekdays=weekdays,
        days_restricted=not parts[2].startswith("*"),
        weekdays_restricted=not parts[4].startswith("*"),
    )


def next_run(schedule: Schedule, after: datetime) -> datetime | None:
    """The first minute strictly after ``after`` that matches (None: it never does)."""
    start = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    day = start.replace(hour=0, minute=0)
    for offset in range(_SEARCH_DAYS):
        candidate_day = day + timedelta(days=offset)
        if not schedule.day_matches(candidate_day):
            continue
        for hour in sorted(schedule.hours):
            for minute in sorted(schedule.minutes):
                when = candidate_day.replace(hour=hour, minute=minute)
                if when >= start:
                    return when
    return None


def _parse_field(
    text: str, name: str, low: int, high: int, names: tuple[str, ...]
) -> frozenset[int]:
    out: set[int] = set()
    for item in text.split(","):
        base, _, step_text = item.partition("/")
        step = _number(step_text, name, names=(), low=0) if step_text else 1
        if step < 1:
            raise ValueError(f"{name}: a step must be at least 1, got {item!r}")
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = _number(a, name, names, low), _number(b, name, names, low)
        else:
            first = _number(base, name, names, low)
            last = high if step_text else first
        if not (low <= first <= high and low <= last <= high) or first > last:
            raise ValueError(f"{name} must be within {low}-{high}, got {item!r}")
        out.update(range(first, last + 1, step))
    return frozenset(out)


def _number(text: str, name: str, names: tuple[str, ...], low: int) -> int:
    lowered = text.lower()
    if lowered in names:
        return names.index(lowered) + low
    if not text.isdigit():
        raise ValueError(f"{name}: {text!r} is not a number" + (" or name" if names else ""))
    return int(text)
