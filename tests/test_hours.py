"""Business hours: parsing `hours:` and judging moments, the clock pinned in every case."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from agentbot.hours import Hours, is_open, parse_hours

OFFICE = {
    "tz": "America/Sao_Paulo",
    "mon-fri": "08:00-18:00",
    "sat": "08:00-12:00",
    "holidays": [date(2026, 12, 25), "2027-01-01"],
}
SAO_PAULO = timezone(timedelta(hours=-3))  # no daylight saving time since 2019


def office() -> Hours:
    hours, problems = parse_hours(OFFICE)
    assert problems == []
    assert hours is not None
    return hours


@pytest.mark.parametrize(
    ("moment", "open_"),
    [
        (datetime(2026, 12, 1, 8, 0, tzinfo=SAO_PAULO), True),  # Tuesday, opening minute
        (datetime(2026, 12, 1, 7, 59, tzinfo=SAO_PAULO), False),  # a minute before
        (datetime(2026, 12, 1, 17, 59, tzinfo=SAO_PAULO), True),
        (datetime(2026, 12, 1, 18, 0, tzinfo=SAO_PAULO), False),  # the end is not inside
        (datetime(2026, 12, 5, 11, 30, tzinfo=SAO_PAULO), True),  # Saturday morning
        (datetime(2026, 12, 5, 12, 0, tzinfo=SAO_PAULO), False),  # Saturday noon
        (datetime(2026, 12, 6, 10, 0, tzinfo=SAO_PAULO), False),  # Sunday: not named
        (datetime(2026, 12, 25, 10, 0, tzinfo=SAO_PAULO), False),  # a holiday (YAML date)
        (datetime(2027, 1, 1, 10, 0, tzinfo=SAO_PAULO), False),  # a holiday (ISO text)
        (datetime(2026, 12, 1, 11, 0, tzinfo=UTC), True),  # 08:00 in São Paulo
        (datetime(2026, 12, 1, 10, 59, tzinfo=UTC), False),  # 07:59 there
        (datetime(2026, 12, 1, 21, 30, tzinfo=UTC), False),  # 18:30 there
    ],
)
def test_open_at(moment: datetime, open_: bool) -> None:
    """The office is open Monday-Friday 8-18 and Saturday 8-12 in its own zone, not on holidays."""
    assert is_open(office(), moment) is open_


@pytest.mark.parametrize(
    ("raw", "moment", "open_"),
    [
        # a lunch break: two ranges
        (
            {"mon": ["08:00-12:00", "13:00-18:00"]},
            datetime(2026, 11, 30, 12, 30, tzinfo=UTC),
            False,
        ),
        ({"mon": ["08:00-12:00", "13:00-18:00"]}, datetime(2026, 11, 30, 13, 0, tzinfo=UTC), True),
        # a range that wraps past Sunday, and a list of days
        ({"fri-mon": "10:00-11:00"}, datetime(2026, 11, 29, 10, 30, tzinfo=UTC), True),  # Sunday
        ({"fri-mon": "10:00-11:00"}, datetime(2026, 12, 1, 10, 30, tzinfo=UTC), False),  # Tuesday
        ({"mon,wed": "10:00-11:00"}, datetime(2026, 12, 2, 10, 30, tzinfo=UTC), True),  # Wednesday
        # until midnight, and a day closed explicitly
        ({"tue": "20:00-24:00"}, datetime(2026, 12, 1, 23, 59, tzinfo=UTC), True),
        ({"sat": "00:00-24:00", "sun": "closed"}, datetime(2026, 11, 29, 12, 0, tzinfo=UTC), False),
    ],
)
def test_day_shapes(raw: dict[str, object], moment: datetime, open_: bool) -> None:
    """Lists of ranges, wrapping day ranges, day lists, 24:00 and closed (zone: UTC)."""
    hours, problems = parse_hours({"tz": "UTC", **raw})
    assert problems == []
    assert hours is not None
    assert is_open(hours, moment) is open_


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (
            "08:00-18:00",
            ("", "expected a mapping like {tz: America/Sao_Paulo, mon-fri: 08:00-18:00}"),
        ),
        (
            {"mon": "08:00-18:00"},
            ("tz", "is missing: name the time zone, e.g. tz: America/Sao_Paulo"),
        ),
        ({"tz": 3}, ("tz", "expected a time zone name like America/Sao_Paulo, got 3")),
        (
            {"tz": "America/Sao_Paul"},
            ("tz", "'America/Sao_Paul' is not a known time zone: use e.g. America/Sao_Paulo"),
        ),
        (
            {"tz": "UTC", "mom": "08:00-18:00"},
            ("mom", "'mom' is not a day: use mon ... sun, a range like mon-fri, holidays or tz"),
        ),
        (
            {"tz": "UTC", "mon-fry": "08:00-18:00"},
            (
                "mon-fry",
                "'mon-fry' is not a day: use mon ... sun, a range like mon-fri, holidays or tz",
            ),
        ),
        (
            {"tz": "UTC", "mon": "8h-18h"},
            (
                "mon",
                'expected a time range like "08:00-18:00", a list of them or closed, '
                "got '8h-18h'",
            ),
        ),
        (
            {"tz": "UTC", "mon": 1080},
            ("mon", 'expected a time range like "08:00-18:00", a list of them or closed, got 1080'),
        ),
        (
            {"tz": "UTC", "mon": "08:00-24:30"},
            ("mon", "'08:00-24:30' is not a time of day (00:00 to 24:00)"),
        ),
        (
            {"tz": "UTC", "mon": "08:61-10:00"},
            ("mon", "'08:61-10:00' is not a time of day (00:00 to 24:00)"),
        ),
        (
            {"tz": "UTC", "mon": "24:00-24:00"},
            ("mon", "'24:00-24:00' is not a time of day (00:00 to 24:00)"),
        ),
        (
            {"tz": "UTC", "mon": "22:00-02:00"},
            (
                "mon",
                "'22:00-02:00' ends before it starts: a range may not cross midnight, write "
                "each day's part",
            ),
        ),
        (
            {"tz": "UTC", "mon-fri": "08:00-18:00", "fri": "08:00-12:00"},
            ("fri", "fri is named twice"),
        ),
        (
            {"tz": "UTC", "holidays": "2026-12-25"},
            ("holidays", "expected a list of dates like [2026-12-25]"),
        ),
        (
            {"tz": "UTC", "holidays": ["25/12/2026"]},
            ("holidays", "'25/12/2026' is not a date: write it as 2026-12-25"),
        ),
        (
            {"tz": "UTC", "holidays": [datetime(2026, 12, 25, 0, 0, tzinfo=UTC)]},
            (
                "holidays",
                "'2026-12-25 00:00:00+00:00' is not a date: write it as 2026-12-25",
            ),
        ),
        (
            {"tz": "UTC", "holidays": [20261225]},
            ("holidays", "'20261225' is not a date: write it as 2026-12-25"),
        ),
    ],
)
def test_problems(raw: object, problem: tuple[str, str]) -> None:
    """Each mistake is named under its key with the fix; no hours come back."""
    hours, problems = parse_hours(raw)
    assert hours is None
    assert problems == [problem]
