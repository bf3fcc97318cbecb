"""Business hours: `hours: {tz, mon-fri: "08:00-18:00", sat: ..., holidays: [...]}`.

This module does no I/O: no network, no database, no logging, and it never reads the clock; the
moment to judge is an argument (the engine's `now`). `parse_hours` validates the YAML mapping
(problems come back as data, `(key, message)` pairs) and `is_open` answers for one moment.

Rules:
- `tz` is an IANA zone name (`America/Sao_Paulo`); the hours are wall-clock times there, so a
  change of daylight saving time moves nothing.
- A day key is a weekday (`mon` ... `sun`), a range of weekdays (`mon-fri`; `fri-mon` wraps past
  Sunday), or several of them separated by commas (`mon,wed`). Each weekday may be named once.
- A day's value is `"HH:MM-HH:MM"`, a list of them (`["08:00-12:00", "13:00-18:00"]`) or
  `closed`. The start is inside, the end is not; `24:00` ends at midnight. A range may not cross
  midnight: write the two days' parts.
- A weekday not named is closed. `holidays` lists dates (`2026-12-25`) that are closed all day.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
RANGE = re.compile(r"(\d{2}):(\d{2})-(\d{2}):(\d{2})")
CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Hours:
    tz: tzinfo
    # weekday (Monday 0) -> the open ranges, in minutes after midnight: [start, end)
    week: Mapping[int, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    holidays: frozenset[date] = frozenset()


Problems = list[tuple[str, str]]


def is_open(hours: Hours, now: datetime) -> bool:
    """Whether `now` (an aware datetime) falls in the open hours, in the hours' zone."""
    local = now.astimezone(hours.tz)
    if local.date() in hours.holidays:
        return False
    minute = local.hour * 60 + local.minute
    return any(start <= minute < end for start, end in hours.week.get(local.weekday(), ()))


def parse_hours(raw: object) -> tuple[Hours | None, Problems]:
    """The hours `raw` describes (None when there is any problem) and the problems, each as
    (key under `hours`, or "" for the mapping itself; message)."""
    problems: Problems = []
    if not isinstance(raw, Mapping):
        return None, [("", "expected a mapping like {tz: America/Sao_Paulo, mon-fri: 08:00-18:00}")]
    tz = _zone(raw.get("tz"), problems)
    week: dict[int, tuple[tuple[int, int], ...]] = {}
    holidays: frozenset[date] = frozenset()
    for key, value in raw.items():
        if key == "tz":
            continue
        if key == "holidays":
            holidays = _holidays(value, problems)
            continue
        days = _days(key, problems)
        ranges = _ranges(str(key), value, problems)
        for day in days:
            if day in week:
                problems.append((str(key), f"{DAYS[day]} is named twice"))
            week[day] = ranges
    if tz is None or problems:
        return None, problems
    return Hours(tz=tz, week=week, holidays=holidays), problems


def _zone(value: object, problems: Problems) -> tzinfo | None:
    if value is None:
        problems.append(("tz", "is missing: name the time zone, e.g. tz: America/Sao_Paulo"))
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(("tz", f"expected a time zone name like America/Sao_Paulo, got {value!r}"))
        return None
    try:
        return ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(("tz", f"'{value}' is not a known time zone: use e.g. America/Sao_Paulo"))
        return None


def _days(key: object, problems: Problems) -> list[int]:
    """The weekdays a key names (`mon`, `mon-fri`, `mon,wed`), or [] after a problem."""
    text = str(key).strip().lower()
    days: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        first, dash, last = part.partition("-")
        if first not in DAYS or (dash and last not in DAYS):
            problems.append(
                (
                    str(key),
                    f"'{key}' is not a day: use mon ... sun, a range like mon-fri, holidays or tz",
                )
            )
            return []
        start = DAYS.index(first)
        end = DAYS.index(last) if dash else start
        days.extend((start + i) % 7 for i in range((end - start) % 7 + 1))
    return days


def _ranges(key: str, value: object, problems: Problems) -> tuple[tuple[int, int], ...]:
    if isinstance(value, str) and value.strip().lower() == CLOSED:
        return ()
    items = value if isinstance(value, list) else [value]
    ranges: list[tuple[int, int]] = []
    for item in items:
        found = RANGE.fullmatch(item.replace(" ", "")) if isinstance(item, str) else None
        if found is None:
            problems.append(
                (
                    key,
                    f'expected a time range like "08:00-18:00", a list of them or closed, '
                    f"got {item!r}",
                )
            )
            continue
        h1, m1, h2, m2 = (int(n) for n in found.groups())
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if m1 > 59 or m2 > 59 or start >= 24 * 60 or end > 24 * 60:
            problems.append((key, f"'{item}' is not a time of day (00:00 to 24:00)"))
        elif end <= start:
            problems.append(
                (
                    key,
                    f"'{item}' ends before it starts: a range may not cross midnight, write "
                    "each day's part",
                )
            )
        else:
            ranges.append((start, end))
    return tuple(sorted(ranges))


def _holidays(value: object, problems: Problems) -> frozenset[date]:
    if not isinstance(value, list):
        problems.append(("holidays", "expected a list of dates like [2026-12-25]"))
        return frozenset()
    found: set[date] = set()
    for item in value:
        day = _date(item)
        if day is None:
            problems.append(("holidays", f"'{item}' is not a date: write it as 2026-12-25"))
        else:
            found.add(day)
    return frozenset(found)


def _date(item: object) -> date | None:
    """A YAML date, or its ISO text (as a flow stored in the database gives it back)."""
    if isinstance(item, datetime):
        return None
    if isinstance(item, date):
        return item
    if not isinstance(item, str):
        return None
    try:
        return date.fromisoformat(item.strip())
    except ValueError:
        return None
