"""Dates in expressions: Java patterns, time zones, parsing, dateAdd, timestamps."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from flowhawk.errors import ExpressionError
from flowhawk.expr import Renderer, java_date_format, parse_date

MOMENT = datetime(2024, 3, 5, 14, 7, 9, 123456, tzinfo=UTC)  # a Tuesday


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("yyyy-MM-dd", "2024-03-05"),
        ("yyyy-MM-dd'T'HH:mm:ss.SSSXXX", "2024-03-05T14:07:09.123Z"),
        ("yy M d H m s", "24 3 5 14 7 9"),
        ("yyyyMMddHHmmss", "20240305140709"),
        ("SSSSSS SSSSSSSSS S", "123456 123456000 1"),
        ("E EEE EEEE", "Tue Tue Tuesday"),
        ("MMM MMMM", "Mar March"),
        ("hh:mm a", "02:07 PM"),
        ("h 'o''clock'", "2 o'clock"),
        ("''yyyy''", "'2024'"),
        ("'Quarter' Q, QQQ", "Quarter 1, Q1"),
        ("D", "65"),
        ("z Z X XX XXX ZZZZZ x", "UTC +0000 Z Z Z Z +00"),
        ("VV", "Z"),
        ("[yyyy]", "2024"),
        ("iso", "2024-03-05T14:07:09.123456Z"),
        ("iso_sec", "2024-03-05T14:07:09Z"),
        ("sql", "2024-03-05 14:07:09.123456"),
        ("iso_local_date", "2024-03-05"),
    ],
)
def test_java_patterns_utc(pattern: str, expected: str) -> None:
    assert java_date_format(MOMENT, pattern) == expected


def test_java_patterns_with_time_zones() -> None:
    assert java_date_format(MOMENT, "yyyy-MM-dd'T'HH:mm:ssXXX", "Europe/Paris") == (
        "2024-03-05T15:07:09+01:00"
    )
    summer = datetime(2024, 7, 1, 12, tzinfo=UTC)
    assert java_date_format(summer, "HH:mm XXX XX X Z z VV", "Europe/Paris") == (
        "14:00 +02:00 +0200 +02 +0200 CEST Europe/Paris"
    )
    assert java_date_format(summer, "HH:mm xxx ZZZZ O OOOO", "America/New_York") == (
        "08:00 -04:00 GMT-04:00 GMT-4 GMT-04:00"
    )
    assert java_date_format(MOMENT, "HH:mm X XXX", "Asia/Kolkata") == "19:37 +0530 +05:30"
    assert java_date_format(MOMENT, "HH:mm", "+02:00") == "16:07"
    assert java_date_format(MOMENT, "HH:mm", "UTC") == "14:07"


def test_unknown_pattern_letters_and_zones() -> None:
    with pytest.raises(ExpressionError, match="unknown pattern letter `T`.*quote literal"):
        java_date_format(MOMENT, "yyyy-MM-ddTHH")
    with pytest.raises(ExpressionError, match="unterminated quote"):
        java_date_format(MOMENT, "yyyy 'oops")
    with pytest.raises(ExpressionError, match="unknown time zone `Mars/Olympus`"):
        java_date_format(MOMENT, "yyyy", "Mars/Olympus")
    with pytest.raises(ExpressionError, match="unknown time zone"):
        java_date_format(MOMENT, "yyyy", "../../etc/passwd")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2019-03-01T09:00:00Z", datetime(2019, 3, 1, 9, tzinfo=UTC)),
        ("2019-03-01T09:00:00.5+02:00", datetime(2019, 3, 1, 7, 0, 0, 500000, tzinfo=UTC)),
        ("2019-03-01T09:00:00", datetime(2019, 3, 1, 9, tzinfo=UTC)),
        ("2019-03-01 09:00:00", datetime(2019, 3, 1, 9, tzinfo=UTC)),
        ("2019-03-01", datetime(2019, 3, 1, 12, tzinfo=UTC)),
        ("2019-03-01T10:00+01:00[Europe/Paris]", datetime(2019, 3, 1, 9, tzinfo=UTC)),
        (date(2019, 3, 1), datetime(2019, 3, 1, 12, tzinfo=UTC)),
        (datetime(2019, 3, 1, 9), datetime(2019, 3, 1, 9, tzinfo=UTC)),
        (1551430800, datetime(2019, 3, 1, 9, tzinfo=UTC)),
        (1551430800.5, datetime(2019, 3, 1, 9, 0, 0, 500000, tzinfo=UTC)),
        (1551430800000, datetime(2019, 3, 1, 9, tzinfo=UTC)),
        (1551430800000000, datetime(2019, 3, 1, 9, tzinfo=UTC)),
    ],
)
def test_parse_date(value: object, expected: datetime) -> None:
    parsed = parse_date(value)
    assert parsed.tzinfo is not None
    assert parsed == expected


def test_parse_date_keeps_zone_and_rejects_garbage() -> None:
    parsed = parse_date("2019-03-01T10:00:00+01:00")
    assert parsed.utcoffset() == timedelta(hours=1)
    aware = datetime(2020, 1, 1, tzinfo=timezone(timedelta(hours=-3)))
    assert parse_date(aware) is aware
    for bad in ("yesterday", "", True, None, [2019]):
        with pytest.raises(ExpressionError):
            parse_date(bad)


@pytest.fixture
def r() -> Renderer:
    return Renderer()


def test_date_filter(r: Renderer) -> None:
    ctx = {"trigger": {"date": "2019-03-01T09:00:00Z"}, "d": date(2024, 2, 29), "n": 0}
    assert r.render("{{ trigger.date | date('yyyy-MM') }}", ctx) == "2019-03"
    assert (
        r.render(
            """{{ trigger.date | date("yyyy-MM-dd'T'HH:mm:ssXXX", timezone='Europe/Paris') }}""",
            ctx,
        )
        == "2019-03-01T10:00:00+01:00"
    )
    assert r.render("{{ trigger.date | date('HH:mm', timeZone='America/New_York') }}", ctx) == (
        "04:00"
    )
    assert r.render("{{ trigger.date | date }}", ctx) == "2019-03-01T09:00:00.000000Z"
    assert r.render("{{ trigger.date | date(format='iso_sec') }}", ctx) == "2019-03-01T09:00:00Z"
    assert r.render("{{ d | date('EEEE d MMMM yyyy') }}", ctx) == "Thursday 29 February 2024"
    assert r.render("{{ n | date('yyyy-MM-dd HH:mm') }}", ctx) == "1970-01-01 00:00"
    assert r.render("{{ null | date('yyyy') }}", ctx) == ""


def test_date_filter_existing_format(r: Renderer) -> None:
    assert (
        r.render(
            "{{ '05/03/2024 14:07' | date('yyyy-MM-dd HH:mm', existingFormat='dd/MM/yyyy HH:mm') }}",
            {},
        )
        == "2024-03-05 14:07"
    )
    assert (
        r.render(
            "{{ '2024-March-5' | date(existingFormat='yyyy-MMMM-d', format='yyyy/MM/dd') }}", {}
        )
        == "2024/03/05"
    )
    with pytest.raises(ExpressionError, match="does not match the date pattern"):
        r.render("{{ 'nope' | date('yyyy', existingFormat='dd/MM/yyyy') }}", {})


@pytest.mark.parametrize(
    ("amount", "unit", "expected"),
    [
        (1, "DAYS", "2024-02-01T10:00:00.000000Z"),
        (-1, "DAYS", "2024-01-30T10:00:00.000000Z"),
        (2, "HOURS", "2024-01-31T12:00:00.000000Z"),
        (30, "MINUTES", "2024-01-31T10:30:00.000000Z"),
        (90, "SECONDS", "2024-01-31T10:01:30.000000Z"),
        (1500, "MILLIS", "2024-01-31T10:00:01.500000Z"),
        (5, "MICROS", "2024-01-31T10:00:00.000005Z"),
        (3000, "NANOS", "2024-01-31T10:00:00.000003Z"),
        (1, "HALF_DAYS", "2024-01-31T22:00:00.000000Z"),
        (2, "WEEKS", "2024-02-14T10:00:00.000000Z"),
        (1, "MONTHS", "2024-02-29T10:00:00.000000Z"),
        (13, "MONTHS", "2025-02-28T10:00:00.000000Z"),
        (-1, "YEARS", "2023-01-31T10:00:00.000000Z"),
        (1, "DECADES", "2034-01-31T10:00:00.000000Z"),
        (1, "CENTURIES", "2124-01-31T10:00:00.000000Z"),
    ],
)
def test_date_add_units(r: Renderer, amount: int, unit: str, expected: str) -> None:
    ctx = {"d": "2024-01-31T10:00:00Z", "amount": amount, "unit": unit}
    assert r.render("{{ d | dateAdd(amount, unit) }}", ctx) == expected


def test_date_add_formats_and_zones(r: Renderer) -> None:
    ctx = {"d": "2024-03-30T12:00:00+01:00"}
    # Across the DST change days keep the wall-clock time, hours do not.
    assert r.render("{{ d | dateAdd(1, 'DAYS', timeZone='Europe/Paris') }}", ctx) == (
        "2024-03-31T12:00:00.000000+02:00"
    )
    assert r.render("{{ d | dateAdd(24, 'HOURS', timeZone='Europe/Paris') }}", ctx) == (
        "2024-03-31T13:00:00.000000+02:00"
    )
    assert r.render("{{ d | dateAdd(-1, 'MONTHS') | date('yyyy-MM-dd') }}", ctx) == "2024-02-29"
    assert r.render("{{ d | dateAdd(1, 'days', format='yyyy-MM-dd') }}", ctx) == "2024-03-31"
    with pytest.raises(ExpressionError, match="unknown dateAdd unit `FORTNIGHTS`"):
        r.render("{{ d | dateAdd(1, 'FORTNIGHTS') }}", ctx)


def test_timestamps(r: Renderer) -> None:
    ctx = {"d": "2019-03-01T09:00:00.123456Z"}
    assert r.render("{{ d | timestamp }}", ctx) == "1551430800"
    assert r.render("{{ d | timestampMilli }}", ctx) == "1551430800123"
    assert r.render("{{ d | timestampMicro }}", ctx) == "1551430800123456"
    assert r.render("{{ d | timestampNano }}", ctx) == "1551430800123456000"


def test_date_values_render_as_iso(r: Renderer) -> None:
    ctx = {
        "dt": datetime(2024, 1, 2, 3, 4, 5, tzinfo=ZoneInfo("Europe/Paris")),
        "d": date(2024, 1, 2),
    }
    assert r.render("{{ dt }} {{ d }}", ctx) == "2024-01-02T03:04:05.000000+01:00 2024-01-02"
    assert r.render("{{ {'at': d} }}", ctx) == '{"at":"2024-01-02"}'
