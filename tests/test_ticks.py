"""Schedule-trigger tick arithmetic: cron parsing, zones, DST, backfills, missed ticks."""

from __future__ import annotations

import time as clock
from datetime import UTC, date, datetime, timedelta, timezone
from itertools import islice, takewhile
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from cronsim import CronSim, CronSimError
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from flowhawk.engine.ticks import CronSchedule, missed_ticks, parse_when, plan_backfill

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def iso(ticks: object) -> list[str]:
    return [t.isoformat() for t in ticks]  # type: ignore[attr-defined]


def utc(ticks: object) -> list[datetime]:
    """Ticks as UTC instants: Python compares same-zone datetimes by wall clock, fold ignored."""
    return [t.astimezone(UTC) for t in ticks]  # type: ignore[attr-defined]


def walk_back(schedule: CronSchedule, start: datetime, end: datetime) -> list[datetime]:
    """Ticks in [start, end] found with previous_before only, oldest first."""
    found: list[datetime] = []
    moment = end + timedelta(microseconds=1)
    while (tick := schedule.previous_before(moment)).astimezone(UTC) >= start.astimezone(UTC):
        found.append(tick)
        moment = tick
    return found[::-1]


def walk_forward(schedule: CronSchedule, start: datetime, end: datetime) -> list[datetime]:
    """Ticks in [start, end] found with next_after only."""
    found: list[datetime] = []
    moment = start - timedelta(microseconds=1)
    while (tick := schedule.next_after(moment)).astimezone(UTC) <= end.astimezone(UTC):
        found.append(tick)
        moment = tick
    return found


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "field"),
    [
        ("61 * * * *", "minute field '61'"),
        ("* 24 * * *", "hour field '24'"),
        ("0 0 32 * *", "day-of-month field '32'"),
        ("0 0 0 * *", "day-of-month field '0'"),
        ("0 0 * 13 *", "month field '13'"),
        ("0 0 * * 8", "day-of-week field '8'"),
        ("*/0 * * * *", "minute field '*/0'"),
        ("H * * * *", "minute field 'H'"),
        ("R 1 * * *", "minute field 'R'"),
        ("0 0 * * FOO", "day-of-week field 'FOO'"),
    ],
)
def test_bad_field_is_named(cron: str, field: str) -> None:
    with pytest.raises(ValueError) as err:
        CronSchedule(cron)
    assert f"invalid cron {cron!r}" in str(err.value)
    assert field in str(err.value)


def test_bad_seconds_field_is_named() -> None:
    with pytest.raises(ValueError, match="second field '60'"):
        CronSchedule("60 * * * * *", with_seconds=True)


@pytest.mark.parametrize(
    ("cron", "with_seconds", "message"),
    [
        ("0 * * * * *", False, "6 fields need withSeconds: true"),
        ("0 * * * *", True, "withSeconds: true expects 6 fields"),
        ("0 * * *", False, "expected 5 fields"),
        ("0 0 0 * * * 2024", True, "withSeconds: true expects 6 fields"),
        ("   ", False, "empty"),
        ("@often", False, "unknown nickname"),
        ("0 0 30 2 *", False, "never fires"),
        ("0 0 31 4,6,9,11 *", False, "never fires"),
    ],
)
def test_bad_shape(cron: str, with_seconds: bool, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CronSchedule(cron, with_seconds=with_seconds)


def test_unknown_zone() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Base'"):
        CronSchedule("0 * * * *", timezone="Mars/Base")
    with pytest.raises(ValueError, match="unknown time zone"):
        CronSchedule("0 * * * *", timezone="../etc/passwd")


def test_zone_defaults_and_fixed_offsets() -> None:
    assert CronSchedule("0 9 * * *").timezone == "UTC"
    assert CronSchedule("0 9 * * *", timezone=None).timezone == "UTC"
    fixed = CronSchedule("0 9 * * *", timezone="+05:30")
    tick = fixed.next_after(datetime(2024, 1, 1, tzinfo=UTC))
    assert tick.isoformat() == "2024-01-01T09:00:00+05:30"


def test_naive_datetimes_are_refused() -> None:
    schedule = CronSchedule("0 * * * *")
    with pytest.raises(ValueError, match="has no time zone"):
        schedule.next_after(datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="has no time zone"):
        list(schedule.ticks_between(datetime(2024, 1, 1), datetime(2024, 1, 2, tzinfo=UTC)))


# --- plain ticks ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nickname", "expected"),
    [
        ("@hourly", "2024-05-15T11:00:00+00:00"),
        ("@daily", "2024-05-16T00:00:00+00:00"),
        ("@midnight", "2024-05-16T00:00:00+00:00"),
        ("@weekly", "2024-05-19T00:00:00+00:00"),  # the next Sunday
        ("@monthly", "2024-06-01T00:00:00+00:00"),
        ("@yearly", "2025-01-01T00:00:00+00:00"),
        ("@annually", "2025-01-01T00:00:00+00:00"),
    ],
)
def test_nicknames(nickname: str, expected: str) -> None:
    moment = datetime(2024, 5, 15, 10, 30, tzinfo=UTC)  # a Wednesday
    assert CronSchedule(nickname).next_after(moment).isoformat() == expected
    assert CronSchedule(nickname.upper()).next_after(moment).isoformat() == expected


def test_ticks_are_in_the_trigger_zone() -> None:
    schedule = CronSchedule("0 9 * * *", "Asia/Tokyo")
    tick = schedule.next_after(datetime(2024, 1, 1, 12, 0, tzinfo=UTC))
    assert tick.isoformat() == "2024-01-02T09:00:00+09:00"
    assert tick.tzinfo == ZoneInfo("Asia/Tokyo")


def test_month_ends_skip_short_months() -> None:
    schedule = CronSchedule("0 9 31 * *")
    ticks = list(
        schedule.ticks_between(datetime(2024, 1, 1, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC))
    )
    assert [t.month for t in ticks] == [1, 3, 5, 7, 8, 10, 12]
    assert all(t.day == 31 and t.hour == 9 for t in ticks)


def test_last_day_of_month() -> None:
    schedule = CronSchedule("0 9 L * *")
    ticks = plan_backfill(schedule, date(2024, 1, 1), date(2024, 4, 30))
    assert [t.date().isoformat() for t in ticks] == [
        "2024-01-31",
        "2024-02-29",
        "2024-03-31",
        "2024-04-30",
    ]


def test_leap_days() -> None:
    schedule = CronSchedule("0 0 29 2 *")
    ticks = plan_backfill(schedule, date(2023, 1, 1), date(2028, 12, 31))
    assert iso(ticks) == ["2024-02-29T00:00:00+00:00", "2028-02-29T00:00:00+00:00"]
    previous = schedule.previous_before(datetime(2028, 1, 1, tzinfo=UTC))
    assert previous.isoformat() == "2024-02-29T00:00:00+00:00"
    nxt = schedule.next_after(datetime(2028, 2, 29, tzinfo=UTC))
    assert nxt.isoformat() == "2032-02-29T00:00:00+00:00"


def test_monthly_in_a_zone_with_dst() -> None:
    schedule = CronSchedule("@monthly", "America/New_York")
    ticks = plan_backfill(schedule, date(2024, 1, 1), date(2024, 12, 31))
    assert len(ticks) == 12
    assert all((t.day, t.hour, t.minute) == (1, 0, 0) for t in ticks)
    utc = [t.astimezone(UTC).isoformat() for t in ticks]
    assert utc[0] == "2024-01-01T05:00:00+00:00"  # EST
    assert utc[3] == "2024-04-01T04:00:00+00:00"  # EDT
    assert utc[10] == "2024-11-01T04:00:00+00:00"  # still EDT on 1 November
    assert utc[11] == "2024-12-01T05:00:00+00:00"


def test_six_fields_with_seconds() -> None:
    every20 = CronSchedule("*/20 * * * * *", with_seconds=True)
    start = datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC)
    ticks = list(every20.ticks_between(start, start + timedelta(minutes=1)))
    assert [t.second for t in ticks] == [0, 20, 40, 0]
    assert every20.next_after(start + timedelta(seconds=5)) == start + timedelta(seconds=20)
    at_half = CronSchedule("30 0 9 * * MON-FRI", "Europe/Paris", with_seconds=True)
    tick = at_half.next_after(datetime(2024, 1, 5, 9, 0, 31, tzinfo=PARIS))  # a Friday
    assert tick.isoformat() == "2024-01-08T09:00:30+01:00"
    daily = CronSchedule("@daily", with_seconds=True)
    assert daily.expression == "0 0 0 * * *"
    assert daily.next_after(start).isoformat() == "2024-01-02T00:00:00+00:00"


def test_around_a_tick_exactly() -> None:
    schedule = CronSchedule("0 9 * * *")
    tick = datetime(2024, 6, 10, 9, 0, tzinfo=UTC)
    micro = timedelta(microseconds=1)
    assert schedule.next_after(tick) == tick + timedelta(days=1)
    assert schedule.previous_before(tick) == tick - timedelta(days=1)
    assert schedule.next_after(tick - micro) == tick
    assert schedule.previous_before(tick + micro) == tick
    assert schedule.is_tick(tick)
    assert schedule.is_tick(tick.astimezone(PARIS))  # the same instant, other zone
    assert not schedule.is_tick(tick + micro)
    assert not schedule.is_tick(tick + timedelta(minutes=1))
    assert list(schedule.ticks_between(tick, tick)) == [tick]
    assert list(schedule.ticks_between(tick + micro, tick + timedelta(hours=23))) == []
    assert list(schedule.ticks_between(tick, tick - timedelta(days=3))) == []


def test_day_of_month_and_day_of_week() -> None:
    either = CronSchedule("0 9 1 * MON")  # the 1st OR a Monday
    ticks = plan_backfill(either, date(2024, 1, 1), date(2024, 1, 31))
    assert [t.day for t in ticks] == [1, 8, 15, 22, 29]
    ticks = plan_backfill(either, date(2024, 2, 1), date(2024, 2, 29))
    assert [t.day for t in ticks] == [1, 5, 12, 19, 26]
    both = CronSchedule("0 9 */2 * MON")  # '*' first: Mondays with an odd day number
    ticks = plan_backfill(both, date(2024, 1, 1), date(2024, 2, 29))
    assert [t.day for t in ticks] == [1, 15, 29, 5, 19]


@pytest.mark.parametrize(
    ("cron", "days"),
    [
        # croniter 6 alone reads each of these differently (see the module docstring).
        ("0 9 5-5 * *", [5]),
        ("0 9 3-3/2 * *", [3]),
        ("0 9 1 * 0-6", list(range(1, 32))),  # OR with "every weekday" is every day
        ("0 9 1,15 * 1-7", list(range(1, 32))),
        ("0 9 */10 * SAT,SUN", [21]),  # '*' first: AND
        ("0 9 1-31 * MON", list(range(1, 32))),
        ("0 9 * * 7", [7, 14, 21, 28]),
        ("0 9 * * 5-7", [5, 6, 7, 12, 13, 14, 19, 20, 21, 26, 27, 28]),
        ("0 9 L * *", [31]),
        ("0 9 15W * *", [15]),
        ("0 9 * * MON#2", [8]),
        ("0 9 ? * TUE,thu", [2, 4, 9, 11, 16, 18, 23, 25, 30]),
    ],
)
def test_day_fields_in_january_2024(cron: str, days: list[int]) -> None:
    ticks = plan_backfill(CronSchedule(cron), date(2024, 1, 1), date(2024, 1, 31))
    assert [t.day for t in ticks] == days


@pytest.mark.parametrize(
    ("minute_field", "minutes"),
    [("5-5/3", [5]), ("50/4", [50, 54, 58]), ("10-30/10,45", [10, 20, 30, 45]), ("59-59", [59])],
)
def test_minute_fields(minute_field: str, minutes: list[int]) -> None:
    schedule = CronSchedule(f"{minute_field} 9 * * *")
    assert [
        t.minute for t in plan_backfill(schedule, date(2024, 1, 1), date(2024, 1, 1))
    ] == minutes


def test_month_names_and_backwards_ranges() -> None:
    months = plan_backfill(
        CronSchedule("0 0 1 JAN,mar,Dec *"), date(2024, 1, 1), date(2024, 12, 31)
    )
    assert [t.month for t in months] == [1, 3, 12]
    with pytest.raises(ValueError, match="range 'SAT-SUN' runs backwards"):
        CronSchedule("0 0 * * SAT-SUN")


# --- DST ------------------------------------------------------------------------------


def paris_day(schedule: CronSchedule, day: date) -> list[str]:
    ticks = plan_backfill(schedule, day, day)
    return [t.isoformat()[11:] for t in ticks]


def test_fixed_time_in_the_spring_gap_fires_once_after_it() -> None:
    schedule = CronSchedule("30 2 * * *", "Europe/Paris")
    assert paris_day(schedule, date(2024, 3, 30)) == ["02:30:00+01:00"]
    assert paris_day(schedule, date(2024, 3, 31)) == ["03:00:00+02:00"]
    assert paris_day(schedule, date(2024, 4, 1)) == ["02:30:00+02:00"]
    several = CronSchedule("15,45 2 * * *", "Europe/Paris")
    assert paris_day(several, date(2024, 3, 31)) == ["03:00:00+02:00"]
    also_at_three = CronSchedule("30 2,3 * * *", "Europe/Paris")
    assert paris_day(also_at_three, date(2024, 3, 31)) == ["03:00:00+02:00", "03:30:00+02:00"]
    new_york = CronSchedule("30 2 * * *", "America/New_York")
    tick = new_york.next_after(datetime(2024, 3, 10, 0, 0, tzinfo=NEW_YORK))
    assert tick.isoformat() == "2024-03-10T03:00:00-04:00"


def test_fixed_time_in_the_repeated_hour_fires_once() -> None:
    schedule = CronSchedule("30 2 * * *", "Europe/Paris")
    assert paris_day(schedule, date(2024, 10, 27)) == ["02:30:00+02:00"]
    inside_second_pass = datetime(2024, 10, 27, 2, 40, tzinfo=PARIS, fold=1)
    assert schedule.next_after(inside_second_pass).isoformat() == "2024-10-28T02:30:00+01:00"
    after = datetime(2024, 10, 27, 3, 0, tzinfo=PARIS)
    assert schedule.previous_before(after).isoformat() == "2024-10-27T02:30:00+02:00"


def test_hourly_fires_once_per_real_hour_across_dst() -> None:
    schedule = CronSchedule("0 * * * *", "Europe/Paris")
    assert paris_day(schedule, date(2024, 10, 27))[:5] == [
        "00:00:00+02:00",
        "01:00:00+02:00",
        "02:00:00+02:00",
        "02:00:00+01:00",
        "03:00:00+01:00",
    ]
    assert len(paris_day(schedule, date(2024, 10, 27))) == 25
    assert paris_day(schedule, date(2024, 3, 31))[:3] == [
        "00:00:00+01:00",
        "01:00:00+01:00",
        "03:00:00+02:00",
    ]
    assert len(paris_day(schedule, date(2024, 3, 31))) == 23
    fall_day = utc(plan_backfill(schedule, date(2024, 10, 27), date(2024, 10, 27)))
    gaps = {b - a for a, b in zip(fall_day, fall_day[1:], strict=False)}
    assert gaps == {timedelta(hours=1)}
    half_hourly = CronSchedule("*/30 * * * *", "Europe/Paris")
    assert paris_day(half_hourly, date(2024, 10, 27))[4:10] == [
        "02:00:00+02:00",
        "02:30:00+02:00",
        "02:00:00+01:00",
        "02:30:00+01:00",
        "03:00:00+01:00",
        "03:30:00+01:00",
    ]


def test_wildcard_jobs_skip_the_missing_hour() -> None:
    # Vixie cron: '*' in the minute or hour field means wildcard job, not made up after a gap.
    schedule = CronSchedule("30 * * * *", "Europe/Paris")
    assert paris_day(schedule, date(2024, 3, 31))[:3] == [
        "00:30:00+01:00",
        "01:30:00+01:00",
        "03:30:00+02:00",
    ]
    minutes_in_two = CronSchedule("*/15 2 * * *", "Europe/Paris")
    assert paris_day(minutes_in_two, date(2024, 3, 31)) == []
    assert len(paris_day(minutes_in_two, date(2024, 10, 27))) == 8


def test_skipped_day_and_midnight_gap() -> None:
    # Samoa skipped 30 December 2011 entirely; a fixed-time job fires right after the gap.
    apia = CronSchedule("0 9 * * *", "Pacific/Apia")
    ticks = plan_backfill(apia, date(2011, 12, 29), date(2011, 12, 31))
    assert iso(ticks) == [
        "2011-12-29T09:00:00-10:00",
        "2011-12-31T00:00:00+14:00",
        "2011-12-31T09:00:00+14:00",
    ]
    assert iso(walk_back(apia, ticks[0], ticks[-1])) == iso(ticks)
    # In Chile DST starts at midnight: 2024-09-08 begins at 01:00.
    santiago = CronSchedule("@daily", "America/Santiago")
    ticks = plan_backfill(santiago, date(2024, 9, 7), date(2024, 9, 9))
    assert iso(ticks) == [
        "2024-09-07T00:00:00-04:00",
        "2024-09-08T01:00:00-03:00",
        "2024-09-09T00:00:00-03:00",
    ]


@pytest.mark.parametrize(
    "cron",
    [
        "30 2 * * *",
        "0 * * * *",
        "*/20 * * * *",
        "*/15 2 * * *",
        "15,45 1-3 * * *",
        "0 2 * * *",
        "@daily",
        "59 1 * * *",
    ],
)
@pytest.mark.parametrize("zone", ["Europe/Paris", "America/New_York", "Australia/Lord_Howe"])
def test_directions_agree_across_transitions(cron: str, zone: str) -> None:
    schedule = CronSchedule(cron, zone)
    tz = ZoneInfo(zone)
    for day in (date(2024, 3, 10), date(2024, 3, 31), date(2024, 4, 7), date(2024, 10, 6)):
        for other in (date(2024, 10, 27), date(2024, 11, 3)):
            for when in (day, other):
                start = datetime.combine(when - timedelta(days=1), datetime.min.time(), tz)
                end = start + timedelta(days=3)
                ticks = list(schedule.ticks_between(start, end))
                assert utc(ticks) == sorted(set(utc(ticks)))
                assert iso(walk_forward(schedule, start, end)) == iso(ticks)
                assert iso(walk_back(schedule, start, end)) == iso(ticks)
                assert all(schedule.is_tick(t) for t in ticks)


# --- backfill, parsing, missed ticks -----------------------------------------------------


def test_backfill_2019_monthly() -> None:
    schedule = CronSchedule("0 9 1 * *")
    ticks = plan_backfill(schedule, date(2019, 1, 1), date(2019, 12, 31))
    assert len(ticks) == 12
    assert iso(ticks)[0] == "2019-01-01T09:00:00+00:00"
    assert iso(ticks)[-1] == "2019-12-01T09:00:00+00:00"
    assert iso(ticks) == [f"2019-{m:02d}-01T09:00:00+00:00" for m in range(1, 13)]


def test_backfill_bounds() -> None:
    schedule = CronSchedule("59 23 * * *", "Europe/Paris")
    assert iso(plan_backfill(schedule, date(2024, 1, 1), date(2024, 1, 1))) == [
        "2024-01-01T23:59:00+01:00"
    ]
    last_second = CronSchedule("59 59 23 * * *", "Europe/Paris", with_seconds=True)
    assert len(plan_backfill(last_second, date(2024, 1, 1), date(2024, 1, 2))) == 2
    midnight = CronSchedule("@daily", "Europe/Paris")
    assert iso(plan_backfill(midnight, date(2024, 1, 1), date(2024, 1, 2))) == [
        "2024-01-01T00:00:00+01:00",
        "2024-01-02T00:00:00+01:00",
    ]
    mixed = plan_backfill(midnight, datetime(2024, 1, 1, 0, 0, 1, tzinfo=PARIS), date(2024, 1, 3))
    assert iso(mixed) == ["2024-01-02T00:00:00+01:00", "2024-01-03T00:00:00+01:00"]


def test_backfill_empty_and_reversed() -> None:
    schedule = CronSchedule("0 9 1 * *")
    assert plan_backfill(schedule, date(2019, 1, 2), date(2019, 1, 31)) == []
    assert plan_backfill(schedule, date(2019, 1, 5), date(2019, 1, 5)) == []
    with pytest.raises(ValueError, match="backfill start 2019-02-01T00:00:00\\+00:00 is after"):
        plan_backfill(schedule, date(2019, 2, 1), date(2019, 1, 31))
    with pytest.raises(ValueError, match="more than 5 executions"):
        plan_backfill(schedule, date(2019, 1, 1), date(2019, 12, 31), max_ticks=5)
    assert len(plan_backfill(schedule, date(2019, 1, 1), date(2019, 12, 31), max_ticks=12)) == 12


def test_parse_when() -> None:
    assert parse_when("2019-01-31", "Europe/Paris") == date(2019, 1, 31)
    naive = parse_when("2019-01-31T09:00:00", "Europe/Paris")
    assert isinstance(naive, datetime)
    assert naive.isoformat() == "2019-01-31T09:00:00+01:00"
    assert parse_when("2019-01-31 09:00", PARIS) == naive
    zulu = parse_when("2019-01-31T08:00:00Z", "Europe/Paris")
    assert isinstance(zulu, datetime)
    assert zulu == naive
    assert zulu.isoformat() == "2019-01-31T09:00:00+01:00"
    offset = parse_when("2019-01-31T12:00:00+04:00", "UTC")
    assert isinstance(offset, datetime)
    assert offset.isoformat() == "2019-01-31T08:00:00+00:00"
    fraction = parse_when("2019-01-31T09:00:00.250", "UTC")
    assert isinstance(fraction, datetime)
    assert fraction.microsecond == 250_000
    in_gap = parse_when("2024-03-31T02:30:00", "Europe/Paris")
    assert isinstance(in_gap, datetime)
    assert in_gap.isoformat() == "2024-03-31T03:00:00+02:00"
    repeated = parse_when("2024-10-27T02:30:00", "Europe/Paris")
    assert isinstance(repeated, datetime)
    assert repeated.isoformat() == "2024-10-27T02:30:00+02:00"
    for bad in ("", "yesterday", "2019-13-01", "2019-01-31T25:00"):
        with pytest.raises(ValueError, match="expected ISO-8601"):
            parse_when(bad, "UTC")
    with pytest.raises(ValueError, match="unknown time zone"):
        parse_when("2019-01-31", "Mars/Base")


def test_parse_when_feeds_backfill() -> None:
    schedule = CronSchedule("0 9 1 * *", "Europe/Paris")
    start = parse_when("2019-01-01", schedule.tz)
    end = parse_when("2019-03-01T09:00:00", schedule.tz)
    assert iso(plan_backfill(schedule, start, end)) == [
        "2019-01-01T09:00:00+01:00",
        "2019-02-01T09:00:00+01:00",
        "2019-03-01T09:00:00+01:00",
    ]


def test_missed_ticks() -> None:
    schedule = CronSchedule("0 * * * *", "Europe/Paris")
    last = datetime(2024, 5, 1, 10, 0, tzinfo=PARIS)
    now = datetime(2024, 5, 1, 13, 30, tzinfo=PARIS)
    assert iso(missed_ticks(schedule, last, now, "ALL")) == [
        "2024-05-01T11:00:00+02:00",
        "2024-05-01T12:00:00+02:00",
        "2024-05-01T13:00:00+02:00",
    ]
    assert iso(missed_ticks(schedule, last, now, "LAST")) == ["2024-05-01T13:00:00+02:00"]
    assert missed_ticks(schedule, last, now, "NONE") == []
    assert iso(missed_ticks(schedule, last, now.astimezone(UTC), "last")) == [
        "2024-05-01T13:00:00+02:00"
    ]
    on_tick = datetime(2024, 5, 1, 11, 0, tzinfo=UTC)  # 13:00 in Paris: due, so counted
    assert iso(missed_ticks(schedule, last, on_tick, "LAST")) == ["2024-05-01T13:00:00+02:00"]
    assert len(missed_ticks(schedule, last, on_tick, "ALL")) == 3
    assert missed_ticks(schedule, last, last + timedelta(minutes=59), "ALL") == []
    assert missed_ticks(schedule, last, last + timedelta(minutes=59), "LAST") == []
    assert missed_ticks(schedule, None, now, "ALL") == []
    assert missed_ticks(schedule, now, last, "ALL") == []
    with pytest.raises(ValueError, match="must be ALL, LAST or NONE"):
        missed_ticks(schedule, last, now, "SOME")


def test_missed_ticks_across_fall_back() -> None:
    schedule = CronSchedule("0 * * * *", "Europe/Paris")
    last = datetime(2024, 10, 27, 1, 0, tzinfo=PARIS)
    now = datetime(2024, 10, 27, 3, 5, tzinfo=PARIS)
    assert iso(missed_ticks(schedule, last, now, "ALL")) == [
        "2024-10-27T02:00:00+02:00",
        "2024-10-27T02:00:00+01:00",
        "2024-10-27T03:00:00+01:00",
    ]


# --- speed ------------------------------------------------------------------------------


def best_of(runs: int, work: object) -> float:
    times = []
    for _ in range(runs):
        begin = clock.perf_counter()
        work()  # type: ignore[operator]
        times.append(clock.perf_counter() - begin)
    return min(times)


def test_planning_ten_thousand_ticks_costs_little_more_than_croniter() -> None:
    schedule = CronSchedule("*/5 * * * *", "Europe/Paris")
    start = datetime(2024, 3, 1, tzinfo=PARIS)  # the range crosses the spring transition
    planned: list[datetime] = []

    def ours() -> None:
        planned[:] = islice(schedule.ticks_between(start, start + timedelta(days=60)), 10_000)

    def bare() -> None:
        it = croniter("*/5 * * * *", datetime(2024, 3, 1), ret_type=datetime)
        for _ in range(10_000):
            it.get_next()

    ours_s, bare_s = best_of(3, ours), best_of(3, bare)
    print(f"10,000 ticks: flowhawk {ours_s * 1000:.0f} ms, bare croniter {bare_s * 1000:.0f} ms")
    assert len(planned) == 10_000
    assert len(set(utc(planned))) == 10_000
    assert ours_s / bare_s < 4


# --- property: agreement with an independent cron library --------------------------------


def field(low: int, high: int) -> st.SearchStrategy[str]:
    value = st.integers(low, high)
    step = st.integers(1, high - low + 1)
    span = st.tuples(value, value).map(sorted)
    return st.one_of(
        st.just("*"),
        step.map(lambda n: f"*/{n}"),
        value.map(str),
        span.map(lambda ab: f"{ab[0]}-{ab[1]}"),
        # cronsim 2.x reads a one-value range with a step (5-5/2) like 5/2 (up to the maximum);
        # Vixie cron and flowhawk read it as 5, so only proper ranges get a step here.
        st.tuples(span.filter(lambda ab: ab[0] < ab[1]), step).map(
            lambda x: f"{x[0][0]}-{x[0][1]}/{x[1]}"
        ),
        st.tuples(value, step).map(lambda x: f"{x[0]}/{x[1]}"),
        st.lists(value, min_size=2, max_size=4, unique=True).map(lambda xs: ",".join(map(str, xs))),
    )


crons = st.tuples(
    field(0, 59), field(0, 23), field(1, 31), field(1, 12), field(0, 6) | st.just("7")
).map(" ".join)
zones = st.sampled_from(
    ["UTC", "Asia/Kolkata", "Europe/Paris", "America/New_York", "Australia/Sydney"]
)
starts = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
).map(lambda d: d.replace(second=0, microsecond=0))
spans = st.one_of(
    st.integers(0, 120).map(lambda m: timedelta(minutes=m)),
    st.integers(0, 72).map(lambda h: timedelta(hours=h)),
    st.integers(0, 800).map(lambda d: timedelta(days=d)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(cron=crons, zone=zones, start_utc=starts, span=spans)
def test_ticks_match_cronsim(cron: str, zone: str, start_utc: datetime, span: timedelta) -> None:
    try:
        schedule = CronSchedule(cron, zone)
    except ValueError:
        assume(False)
        return
    tz = ZoneInfo(zone)
    start = start_utc.astimezone(tz)
    end = start + span
    limit = 300
    ours = [t.astimezone(UTC) for t in islice(schedule.ticks_between(start, end), limit)]
    try:
        reference = CronSim(cron, start - timedelta(seconds=1))
        theirs = [
            t.astimezone(UTC) for t in islice(takewhile(lambda t: t <= end, reference), limit)
        ]
    except CronSimError:
        assume(False)
        return
    assert ours == theirs
    for tick in ours[:3]:
        assert schedule.previous_before(tick + timedelta(seconds=1)).astimezone(UTC) == tick


seconds_crons = st.tuples(field(0, 59), field(0, 59), field(0, 23)).map(
    lambda f: f"{f[0]} {f[1]} {f[2]} * * *"
)


@settings(max_examples=100, deadline=None)
@given(
    cron=seconds_crons,
    zone=st.sampled_from(["UTC", "Europe/Paris"]),
    start_utc=starts,
    minutes=st.integers(0, 600),
)
def test_seconds_match_cronsim(cron: str, zone: str, start_utc: datetime, minutes: int) -> None:
    schedule = CronSchedule(cron, zone, with_seconds=True)
    start = start_utc.astimezone(ZoneInfo(zone))
    end = start + timedelta(minutes=minutes)
    ours = utc(islice(schedule.ticks_between(start, end), 300))
    reference = CronSim(cron, start - timedelta(seconds=1))
    assert ours == utc(islice(takewhile(lambda t: t <= end, reference), 300))


@settings(max_examples=150, deadline=None)
@given(
    cron=crons,
    zone=st.sampled_from(
        ["Europe/Paris", "America/New_York", "America/Santiago", "Australia/Lord_Howe"]
    ),
    year=st.integers(2000, 2030),
    spring=st.booleans(),
)
def test_transitions_match_cronsim_both_ways(cron: str, zone: str, year: int, spring: bool) -> None:
    try:
        schedule = CronSchedule(cron, zone)
    except ValueError:
        assume(False)
        return
    tz = ZoneInfo(zone)
    # Find the day of a transition that year by scanning the UTC offset at noon.
    month = 3 if spring else 10
    day = datetime(year, month, 1, 12, tzinfo=tz)
    while day.utcoffset() == (day + timedelta(days=1)).utcoffset() and day.month < month + 2:
        day += timedelta(days=1)
    start = day - timedelta(hours=12)
    end = day + timedelta(hours=36)
    ticks = list(islice(schedule.ticks_between(start, end), 400))
    assume(len(ticks) < 400)
    assert utc(ticks) == sorted(set(utc(ticks)))
    if zone != "Australia/Lord_Howe":
        # cronsim 2.x loses ticks after Lord Howe's half-hour jump (from 00:59 it goes to
        # 08:31 for '* */8 * * *'); whole-hour transitions it handles with Vixie's rules too.
        # Around the clock change itself cronsim follows its own rule for wildcard jobs
        # (it catches up `* 0 * * *` after a midnight gap; Vixie cron, and flowhawk, skip
        # it). Those instants are checked by the explicit DST tests above; compare the rest.
        change = transition_instant(start, end, tz)
        reference = CronSim(cron, start - timedelta(seconds=1))
        theirs = utc(islice(takewhile(lambda t: t <= end, reference), 400))
        assert away_from(utc(ticks), change) == away_from(theirs, change)
    assert iso(walk_back(schedule, start, end)) == iso(ticks)
    if len(ticks) < 100:
        assert iso(walk_forward(schedule, start, end)) == iso(ticks)


def transition_instant(start: datetime, end: datetime, tz: ZoneInfo) -> datetime:
    """The first instant in [start, end] whose UTC offset differs from start's (1 min steps)."""
    first = start.astimezone(tz).utcoffset()
    moment = start.astimezone(UTC)
    while moment <= end.astimezone(UTC):
        if moment.astimezone(tz).utcoffset() != first:
            return moment
        moment += timedelta(minutes=1)
    return end.astimezone(UTC) + timedelta(days=365)


def away_from(ticks: list[datetime], change: datetime) -> list[datetime]:
    return [t for t in ticks if abs(t - change) > timedelta(hours=2)]


def test_fixed_offset_zone_object() -> None:
    schedule = CronSchedule("0 12 * * *", "-03:00")
    assert schedule.tz == timezone(timedelta(hours=-3))
    assert schedule.next_after(datetime(2024, 1, 1, tzinfo=UTC)).hour == 12
