"""Dates for the expression language: parsing, Java ``DateTimeFormatter`` patterns, arithmetic.

Kestra formats dates with Java patterns (``yyyy-MM-dd'T'HH:mm:ssXXX``), converts them to the
target time zone (the server's default zone, here UTC, when none is given), and renders a bare
date as that day at noon so that a zone change cannot move it to another day.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flowhawk.errors import ExpressionError

MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

#: Kestra's named formats (``date('iso')``); the default format of ``date`` and ``dateAdd``.
NAMED_FORMATS = {
    "iso": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX",
    "iso_sec": "yyyy-MM-dd'T'HH:mm:ssXXX",
    "sql": "yyyy-MM-dd HH:mm:ss.SSSSSS",
    "sql_seq": "yyyy-MM-dd HH:mm:ss",
    "iso_date_time": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX'['VV']'",
    "iso_zoned_date_time": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX'['VV']'",
    "iso_offset_date_time": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX",
    "iso_date": "yyyy-MM-ddXXX",
    "iso_time": "HH:mm:ss.SSSSSSXXX",
    "iso_offset_time": "HH:mm:ss.SSSSSSXXX",
    "iso_local_date": "yyyy-MM-dd",
    "iso_local_date_time": "yyyy-MM-dd'T'HH:mm:ss.SSSSSS",
    "iso_local_time": "HH:mm:ss.SSSSSS",
    "iso_ordinal_date": "yyyy-DDDXXX",
    "iso_week_date": "YYYY-'W'ww-eXXX",
    "rfc_1123_date_time": "EEE, d MMM yyyy HH:mm:ss 'GMT'",
    "full": "EEEE, MMMM d, yyyy 'at' h:mm:ss a z",
    "long": "MMMM d, yyyy 'at' h:mm:ss a z",
    "medium": "MMM d, yyyy, h:mm:ss a",
    "short": "M/d/yy, h:mm a",
}

#: ``dateAdd`` units (Java ``ChronoUnit`` names) that move along the time line.
_TIME_UNITS = {
    "NANOS": 1e-9,
    "MICROS": 1e-6,
    "MILLIS": 1e-3,
    "SECONDS": 1,
    "MINUTES": 60,
    "HOURS": 3600,
    "HALF_DAYS": 43200,
}
#: Units that move the local calendar date (days keep the wall-clock time across DST).
_DAY_UNITS = {"DAYS": 1, "WEEKS": 7}
_MONTH_UNITS = {"MONTHS": 1, "YEARS": 12, "DECADES": 120, "CENTURIES": 1200, "MILLENNIA": 12000}

_PATTERN_LETTERS = set("GuyDMLdQqYwWEecFahKkHmsSAnNVvzOXxZ")


# -- time zones ------------------------------------------------------------------------------


_OFFSET_RE = re.compile(r"^(?:UTC|GMT|UT)?([+-])(\d{1,2})(?::?(\d{2}))?$")


def zone(name: str | None) -> tzinfo:
    """The time zone named like Java's ``ZoneId.of``: a region, ``UTC``/``Z``, or an offset."""
    if name is None:
        return UTC
    if not isinstance(name, str):
        raise ExpressionError(f"time zone must be a string, not {type_name(name)}")
    text = name.strip()
    if text.upper() in ("Z", "UTC", "GMT", "UT"):
        return UTC
    match = _OFFSET_RE.match(text)
    if match:
        sign, hours, minutes = match.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes or 0))
        if delta > timedelta(hours=18):
            raise ExpressionError(f"time zone offset out of range: `{name}`")
        return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ExpressionError(f"unknown time zone `{name}`") from None


# -- parsing ---------------------------------------------------------------------------------


def _from_epoch(number: float) -> datetime:
    """Epoch seconds; larger magnitudes are read as milli-, micro- or nanoseconds."""
    value = float(number)
    magnitude = abs(value)
    if magnitude >= 1e17:
        value /= 1e9
    elif magnitude >= 1e14:
        value /= 1e6
    elif magnitude >= 1e11:
        value /= 1e3
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise ExpressionError(f"epoch value out of range: {number}") from None


def parse_date(
    value: Any, existing_format: str | None = None, tz: str | tzinfo | None = None
) -> datetime:
    """A timezone-aware datetime from an ISO string, a date, a datetime or an epoch number.

    Strings may end with ``Z``, an offset, or Java's ``[Region/Zone]`` suffix. A date alone
    means noon of that day (as Kestra does); values without a zone are read in ``tz`` (UTC when
    not given). ``existing_format`` is a Java pattern the string must follow instead of ISO.
    """
    default_zone = tz if isinstance(tz, tzinfo) else zone(tz)
    if isinstance(value, bool) or value is None:
        raise ExpressionError(f"not a date: {render_plain(value)}")
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=default_zone)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, 12, tzinfo=default_zone)
    if isinstance(value, int | float):
        return _from_epoch(value)
    if not isinstance(value, str):
        raise ExpressionError(f"not a date: a {type_name(value)}")
    if existing_format is not None:
        return parse_with_pattern(value, existing_format, default_zone)
    return _parse_iso(value, default_zone)


def _parse_iso(text: str, default_zone: tzinfo) -> datetime:
    raw = text.strip()
    region: tzinfo | None = None
    if raw.endswith("]") and "[" in raw:
        raw, _, name = raw[:-1].partition("[")
        region = zone(name)
    try:
        if len(raw) == 10 and raw[4] == "-" and raw[7] == "-":
            day = date.fromisoformat(raw)
            return datetime(day.year, day.month, day.day, 12, tzinfo=region or default_zone)
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        raise ExpressionError(f"not an ISO date: `{text}`") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=region or default_zone)
    return parsed.astimezone(region) if region is not None else parsed


# -- Java patterns ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    letter: str
    count: int


def _tokenize_pattern(pattern: str) -> list[_Field | str]:
    """Split a Java pattern into fields and literal text (``'quoted'``, ``''`` is a quote)."""
    parts: list[_Field | str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "'":
            if i + 1 < n and pattern[i + 1] == "'":
                parts.append("'")
                i += 2
                continue
            end = i + 1
            text = []
            while True:
                if end >= n:
                    raise ExpressionError(f"unterminated quote in date pattern `{pattern}`")
                if pattern[end] == "'":
                    if end + 1 < n and pattern[end + 1] == "'":
                        text.append("'")
                        end += 2
                        continue
                    break
                text.append(pattern[end])
                end += 1
            parts.append("".join(text))
            i = end + 1
        elif ch.isascii() and ch.isalpha():
            if ch not in _PATTERN_LETTERS:
                raise ExpressionError(
                    f"unknown pattern letter `{ch}` in date pattern `{pattern}` "
                    f"(quote literal text, e.g. '{ch}')"
                )
            j = i
            while j < n and pattern[j] == ch:
                j += 1
            parts.append(_Field(ch, j - i))
            i = j
        elif ch in "[]":
            i += 1  # optional sections: when formatting, every field is available
        elif ch in "{}#":
            raise ExpressionError(f"reserved character `{ch}` in date pattern `{pattern}`")
        else:
            parts.append(ch)
            i += 1
    return parts


def _offset_text(offset: timedelta, colon: bool, seconds: bool, hours_only: bool) -> str:
    total = int(offset.total_seconds())
    sign = "-" if total < 0 else "+"
    total = abs(total)
    hh, rest = divmod(total, 3600)
    mm, ss = divmod(rest, 60)
    sep = ":" if colon else ""
    text = f"{sign}{hh:02d}"
    if hours_only and not mm:
        return text
    text += f"{sep}{mm:02d}"
    if seconds and ss:
        text += f"{sep}{ss:02d}"
    return text


def _zone_id(dt: datetime) -> str:
    key = getattr(dt.tzinfo, "key", None)
    if key:
        return str(key)
    offset = dt.utcoffset() or timedelta(0)
    return "Z" if not offset else _offset_text(offset, True, True, False)


def _number(value: int, count: int) -> str:
    return str(value).zfill(count) if count > 1 else str(value)


def _format_field(dt: datetime, field: _Field) -> str:  # noqa: C901 - a flat table of letters
    letter, count = field.letter, field.count
    offset = dt.utcoffset() or timedelta(0)
    if letter in "yu":
        return f"{dt.year % 100:02d}" if count == 2 else _number(dt.year, count)
    if letter == "Y":
        year = dt.isocalendar()[0]
        return f"{year % 100:02d}" if count == 2 else _number(year, count)
    if letter in "ML":
        if count >= 5:
            return MONTHS[dt.month - 1][0]
        if count == 4:
            return MONTHS[dt.month - 1]
        if count == 3:
            return MONTHS[dt.month - 1][:3]
        return _number(dt.month, count)
    if letter == "d":
        return _number(dt.day, count)
    if letter == "D":
        return _number(dt.timetuple().tm_yday, count)
    if letter in "Qq":
        quarter = (dt.month - 1) // 3 + 1
        if count == 3:
            return f"Q{quarter}"
        if count >= 4:
            return ["1st", "2nd", "3rd", "4th"][quarter - 1] + " quarter"
        return _number(quarter, count)
    if letter == "w":
        return _number(dt.isocalendar()[1], count)
    if letter == "W":
        first = dt.replace(day=1).weekday()
        return _number((dt.day + first - 1) // 7 + 1, count)
    if letter == "F":
        return _number((dt.day - 1) // 7 + 1, count)
    if letter in "Eec":
        if letter in "ec" and count <= 2:
            return _number(dt.isoweekday() % 7 + 1, count)  # US week: Sunday is 1
        name = DAYS[dt.weekday()]
        return name if count == 4 else name[0] if count >= 5 else name[:3]
    if letter == "G":
        return "Anno Domini" if count == 4 else "A" if count >= 5 else "AD"
    if letter == "a":
        return "AM" if dt.hour < 12 else "PM"
    if letter == "H":
        return _number(dt.hour, count)
    if letter == "k":
        return _number(dt.hour or 24, count)
    if letter == "K":
        return _number(dt.hour % 12, count)
    if letter == "h":
        return _number(dt.hour % 12 or 12, count)
    if letter == "m":
        return _number(dt.minute, count)
    if letter == "s":
        return _number(dt.second, count)
    if letter == "S":
        return f"{dt.microsecond * 1000:09d}"[:count].ljust(count, "0")
    if letter == "A":
        millis = ((dt.hour * 60 + dt.minute) * 60 + dt.second) * 1000 + dt.microsecond // 1000
        return _number(millis, count)
    if letter == "n":
        return _number(dt.microsecond * 1000, count)
    if letter == "N":
        seconds = (dt.hour * 60 + dt.minute) * 60 + dt.second
        return _number(seconds * 1_000_000_000 + dt.microsecond * 1000, count)
    if letter == "V":
        return _zone_id(dt)
    if letter in "zv":
        if count >= 4:
            return _zone_id(dt)
        return dt.tzname() or _zone_id(dt)
    if letter == "O":
        if not offset:
            return "GMT"
        if count >= 4:
            return "GMT" + _offset_text(offset, True, True, False)
        total = int(offset.total_seconds())
        hh, rest = divmod(abs(total), 3600)
        sign = "-" if total < 0 else "+"
        return f"GMT{sign}{hh}" + (f":{rest // 60:02d}" if rest else "")
    if letter in "Xx":
        if letter == "X" and not offset:
            return "Z"
        return _offset_text(offset, count in (3, 5), count >= 4, count == 1)
    if letter == "Z":
        if count == 4:
            return "GMT" + (_offset_text(offset, True, True, False) if offset else "")
        if count >= 5:
            return "Z" if not offset else _offset_text(offset, True, True, False)
        return _offset_text(offset, False, False, False)
    raise ExpressionError(f"unsupported pattern letter `{letter}`")


def java_date_format(dt: Any, pattern: str, tz: str | tzinfo | None = None) -> str:
    """Format ``dt`` (anything :func:`parse_date` accepts) with a Java ``DateTimeFormatter``
    pattern or one of Kestra's named formats, in time zone ``tz`` (UTC when not given)."""
    target = tz if isinstance(tz, tzinfo) else zone(tz)
    moment = parse_date(dt, tz=target).astimezone(target)
    parts = _tokenize_pattern(NAMED_FORMATS.get(pattern, pattern))
    return "".join(part if isinstance(part, str) else _format_field(moment, part) for part in parts)


def _field_regex(field: _Field) -> str:  # noqa: C901 - a flat table of letters
    letter, count = field.letter, field.count
    if letter in "yuY":
        return r"(?P<y2>\d{2})" if count == 2 else r"(?P<y>[+-]?\d{1,9})"
    if letter in "ML":
        if count >= 4:
            return "(?P<mname>" + "|".join(MONTHS) + ")"
        if count == 3:
            return "(?P<mabbr>" + "|".join(m[:3] for m in MONTHS) + ")"
        return r"(?P<M>\d{1,2})"
    simple = {"d": "d", "H": "H", "k": "k", "K": "K", "h": "h", "m": "m", "s": "s", "D": "D"}
    if letter in simple:
        return rf"(?P<{simple[letter]}>\d{{1,3}})"
    if letter == "S":
        return rf"(?P<S>\d{{{count}}})"
    if letter == "a":
        return r"(?P<a>AM|PM|am|pm)"
    if letter in "Eec":
        return "(?:" + "|".join(DAYS + [d[:3] for d in DAYS]) + r"|\d)"
    if letter in "XxZO":
        return r"(?P<off>Z|(?:GMT)?[+-]\d{1,2}(?::?\d{2}(?::?\d{2})?)?|GMT)"
    if letter in "Vzv":
        return r"(?P<zone>[A-Za-z_]+(?:/[A-Za-z_+\-0-9]+)*)"
    if letter == "G":
        return r"(?:AD|BC|Anno Domini)"
    raise ExpressionError(f"pattern letter `{letter}` cannot be used to parse dates")


def parse_with_pattern(text: str, pattern: str, default_zone: tzinfo) -> datetime:
    """Read ``text`` written with a Java pattern (the ``existingFormat`` of Kestra filters)."""
    regex = []
    for part in _tokenize_pattern(NAMED_FORMATS.get(pattern, pattern)):
        regex.append(re.escape(part) if isinstance(part, str) else _field_regex(part))
    try:
        match = re.fullmatch("".join(regex), text.strip())
    except re.error:
        match = None
    if match is None:
        raise ExpressionError(f"`{text}` does not match the date pattern `{pattern}`")
    g = {k: v for k, v in match.groupdict().items() if v is not None}
    year = int(g["y"]) if "y" in g else 2000 + int(g["y2"]) if "y2" in g else 1970
    if "mname" in g:
        month = MONTHS.index(g["mname"]) + 1
    elif "mabbr" in g:
        month = [m[:3] for m in MONTHS].index(g["mabbr"]) + 1
    else:
        month = int(g.get("M", 1))
    hour = int(g.get("H", g.get("k", 0))) % 24
    if "h" in g or "K" in g:
        hour = int(g.get("h", g.get("K", 0))) % 12
        if g.get("a", "AM").upper() == "PM":
            hour += 12
    micro = int(g["S"].ljust(6, "0")[:6]) if "S" in g else 0
    tz: tzinfo = default_zone
    if "off" in g:
        tz = zone(g["off"][3:] if g["off"].startswith("GMT") and len(g["off"]) > 3 else g["off"])
    elif "zone" in g:
        tz = zone(g["zone"])
    try:
        if "D" in g and "M" not in g and "mname" not in g and "mabbr" not in g:
            base = datetime(year, 1, 1, tzinfo=tz) + timedelta(days=int(g["D"]) - 1)
            return base.replace(hour=hour, minute=int(g.get("m", 0)), second=int(g.get("s", 0)))
        day = int(g.get("d", 1))
        if not any(k in g for k in ("H", "k", "h", "K", "m", "s")) and "d" in g:
            return datetime(year, month, day, 12, tzinfo=tz)
        return datetime(
            year, month, day, hour, int(g.get("m", 0)), int(g.get("s", 0)), micro, tzinfo=tz
        )
    except ValueError as exc:
        raise ExpressionError(f"invalid date `{text}`: {exc}") from None


# -- arithmetic ------------------------------------------------------------------------------


def _add_months(dt: datetime, months: int) -> datetime:
    index = dt.year * 12 + dt.month - 1 + months
    year, month = divmod(index, 12)
    if not 1 <= year <= 9999:
        raise ExpressionError("date out of range")
    last = calendar.monthrange(year, month + 1)[1]
    return dt.replace(year=year, month=month + 1, day=min(dt.day, last))


def date_add(value: Any, amount: int, unit: str, tz: str | None = None) -> datetime:
    """``value`` moved by ``amount`` Java ``ChronoUnit`` ``unit`` (NANOS ... MILLENNIA).

    Time units move along the time line; days, weeks, months and years move the local date
    and keep the wall-clock time, as Java's ``ZonedDateTime.plus`` does.
    """
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        raise ExpressionError(f"dateAdd amount must be a number, not {type_name(amount)}")
    if not isinstance(unit, str):
        raise ExpressionError("dateAdd unit must be a string such as 'DAYS'")
    target = zone(tz)
    moment = parse_date(value, tz=target).astimezone(target)
    key = unit.upper()
    try:
        if key in _TIME_UNITS:
            shifted = moment.astimezone(UTC) + timedelta(seconds=_TIME_UNITS[key] * amount)
            return shifted.astimezone(target)
        if key in _DAY_UNITS:
            local = moment.replace(tzinfo=None) + timedelta(days=_DAY_UNITS[key] * amount)
            return local.replace(tzinfo=target)
        if key in _MONTH_UNITS:
            local = _add_months(moment.replace(tzinfo=None), int(amount) * _MONTH_UNITS[key])
            return local.replace(tzinfo=target)
    except OverflowError:
        raise ExpressionError("date out of range") from None
    units = ", ".join([*_TIME_UNITS, *_DAY_UNITS, *_MONTH_UNITS])
    raise ExpressionError(f"unknown dateAdd unit `{unit}` (one of {units})")


def epoch(value: Any, scale: int, tz: str | None = None, existing_format: str | None = None) -> int:
    """Epoch of ``value`` in units of ``1/scale`` seconds (1 = seconds, 1000 = millis...)."""
    moment = parse_date(value, existing_format, tz)
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros * scale // 1_000_000


def iso(dt: datetime) -> str:
    """Kestra's default rendering of a datetime (its ``iso`` named format)."""
    return java_date_format(dt, "iso", dt.tzinfo or UTC)


def type_name(value: Any) -> str:
    """The dialect's name of a value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, datetime | date):
        return "date"
    return "object"


def render_plain(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)
