"""Tick arithmetic for Schedule triggers: when a cron fires, in which zone, around DST.

A ``io.kestra.plugin.core.trigger.Schedule`` trigger names a ``cron`` (five fields, or six with
``withSeconds: true`` -- seconds first -- or a nickname such as ``@daily``) and an IANA
``timezone``. This module turns that into instants. It is pure: no database, no clock.

How ticks are computed
----------------------
The cron is evaluated on the *wall clock* of the trigger's zone: croniter walks naive local
date-times (plain calendar arithmetic, no DST involved), and every wall-clock tick is then mapped
to real instants. Ticks are returned as timezone-aware datetimes in the trigger's zone.

DST rules (Vixie cron's, as documented in cron(8))
---------------------------------------------------
A cron is a *wildcard job* when its minute or hour field starts with ``*`` (``*``, ``*/15``;
``@hourly`` too). Every other cron is a *fixed-time job* (``30 2 * * *``, ``@daily``).

* Spring forward (local times that do not exist, e.g. 02:00-02:59 in Europe/Paris on 2024-03-31):

  - a fixed-time job whose tick falls in the gap fires once, at the first real instant after the
    gap (``30 2 * * *`` fires at 03:00+02:00). Several ticks in the same gap fire once together;
  - a wildcard job keeps the rhythm of real time: ticks inside the gap do not exist and are
    skipped (``0 * * * *`` fires at 01:00+01:00 then 03:00+02:00, one real hour apart).

* Fall back (local times that happen twice, e.g. 02:00-02:59 in Europe/Paris on 2024-10-27):

  - a fixed-time job fires once, at the first occurrence (``30 2 * * *`` at 02:30+02:00 only);
  - a wildcard job fires in both occurrences (``0 * * * *`` at 02:00+02:00 *and* 02:00+01:00),
    i.e. once per real hour.

Vixie cron only applies the gap/repeat rules to clock changes shorter than three hours; flowhawk
applies them to every transition (whole skipped days such as Pacific/Apia's 2011-12-30 included),
which keeps the behaviour the same for every zone.

So ``*/15 2 * * *`` (a wildcard job: its minute field starts with ``*``) does not run at all on
the spring-forward day in Paris, and runs eight times on the fall-back day.

Day fields
----------
Also as in Vixie cron: when both day-of-month and day-of-week are restricted, a day matches
either of them (``0 9 1 * MON``: the 1st and every Monday), except that a field starting with
``*`` (``*/2``) counts as unrestricted, which makes the two an intersection
(``0 9 */2 * MON``: Mondays with an odd day number).

What croniter gets wrong, and how it is wrapped (checked against croniter 6.2)
------------------------------------------------------------------------------
* With aware datetimes, fixed-time ticks in a repeated hour fire *twice* (02:30+02:00 and
  02:30+01:00). We only ever give croniter naive wall-clock times and map them ourselves, which
  also makes forward and backward iteration agree.
* Some fields are mis-read: ``5-5`` as ``*``, ``5-5/3`` as ``*/3``, a full range such as ``0-6``
  in day-of-week as ``*`` (turning day-of-month OR day-of-week into AND). Standard fields are
  therefore expanded here and handed to croniter as explicit lists, with the OR/AND choice
  made explicitly (``day_or``). Only the extensions ``L``, ``nW`` and ``n#k`` go to croniter as
  written; its hashed/random values (``H``, ``R``) are refused.

Beware when comparing ticks: Python compares two datetimes that share a tzinfo by their wall
clock, ignoring ``fold``, so 02:00+02:00 and 02:00+01:00 of a fall-back night are ``==`` (and
hash alike). Compare or key them by ``tick.astimezone(UTC)``, as this module does internally.

Instants are handled internally as whole POSIX seconds (cron has one-second resolution), which
makes ordering and de-duplication exact.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterBadDateError, CroniterError

__all__ = [
    "CronSchedule",
    "RecoverPolicy",
    "missed_ticks",
    "parse_when",
    "plan_backfill",
    "resolve_zone",
]

RecoverPolicy = Literal["ALL", "LAST", "NONE"]

_NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
_ALLOWED = {
    "second": "0-59",
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31, L, nW",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT, n#k",
}
_RANGES = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "day-of-month": (1, 31),
    "month": (1, 12),
    "day-of-week": (0, 7),
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NAMES = {
    "month": {name: number for number, name in enumerate(_MONTHS, start=1)},
    "day-of-week": {name: number for number, name in enumerate(_DAYS)},
}
# croniter extensions that Kestra does not have: hashed (H) and random (R) values.
_HASHED = re.compile(r"(?:^|,)[HR](?:$|[(/,])", re.IGNORECASE)
_OFFSET_ZONE = re.compile(r"^([+-])(\d{2}):?(\d{2})$")

_SECOND = timedelta(seconds=1)
_MICRO = timedelta(microseconds=1)
_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)
# A walk that starts within this distance of a UTC-offset change starts earlier on the wall
# clock by the size of the change (see CronSchedule._walk).
_NEAR = 26 * 3600
_PROBE_START = datetime(2000, 1, 1)


def resolve_zone(name: str | None) -> tzinfo:
    """Return the tzinfo for an IANA zone name (``None``/empty means UTC).

    Fixed offsets such as ``+02:00`` are accepted as well, as Java's ``ZoneId`` accepts them.
    """
    if name is None or not str(name).strip():
        return ZoneInfo("UTC")
    text = str(name).strip()
    match = _OFFSET_ZONE.match(text)
    if match:
        sign, hours, minutes = match.groups()
        delta = timedelta(hours=int(hours), minutes=int(minutes))
        if delta > timedelta(hours=18):
            raise ValueError(f"unknown time zone {text!r}: offsets go up to ±18:00")
        return timezone(-delta if sign == "-" else delta)
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {text!r} (expected an IANA name such as 'Europe/Paris' or 'UTC')"
        ) from None


def _zone_name(tz: tzinfo) -> str:
    return getattr(tz, "key", None) or str(tz)


def _require_aware(moment: datetime, what: str) -> None:
    if not isinstance(moment, datetime):
        raise TypeError(f"{what} must be a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} {moment.isoformat()} has no time zone; pass an aware datetime")


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH_UTC) // _MICRO


def _floor_seconds(moment: datetime) -> int:
    return _micros(moment) // 1_000_000


def _ceil_seconds(moment: datetime) -> int:
    return -(-_micros(moment) // 1_000_000)


def _offset_seconds(offset: timedelta | None) -> int:
    return (offset or timedelta(0)) // _SECOND


def _offset_at(instant: int, tz: tzinfo) -> int:
    return _offset_seconds((_EPOCH_UTC + timedelta(seconds=instant)).astimezone(tz).utcoffset())


def _wall_of(instant: int, tz: tzinfo) -> datetime:
    return (_EPOCH_UTC + timedelta(seconds=instant)).astimezone(tz).replace(tzinfo=None)


def _gap_end(before: int, after: int, tz: tzinfo) -> int:
    """First instant in ``(before, after]`` whose UTC offset differs from the one at ``before``.

    ``before`` lies just before a spring-forward transition and ``after`` just after it, so the
    answer is the transition itself: the first real instant after the gap.
    """
    offset = _offset_at(before, tz)
    lo, hi = before, after
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_at(mid, tz) == offset:
            lo = mid
        else:
            hi = mid
    return hi


def _wall_instants(wall: datetime, tz: tzinfo, *, all_occurrences: bool) -> tuple[int, ...]:
    """Real instants (POSIX seconds) of a naive local wall time, in increasing order.

    A repeated wall time gives both occurrences when ``all_occurrences`` is set, otherwise only
    the first. A skipped wall time gives nothing when ``all_occurrences`` is set (the wildcard
    rule), otherwise the first instant after the gap (the fixed-time rule).
    """
    base = (wall - _EPOCH_NAIVE) // _SECOND
    first = wall.replace(tzinfo=tz)
    off_first = _offset_seconds(first.utcoffset())
    off_second = _offset_seconds(first.replace(fold=1).utcoffset())
    if off_first == off_second:
        return (base - off_first,)
    if off_first > off_second:  # repeated (fall back): fold=0 is the earlier occurrence
        if all_occurrences:
            return (base - off_first, base - off_second)
        return (base - off_first,)
    if all_occurrences:  # skipped (spring forward)
        return ()
    return (_gap_end(base - off_second, base - off_first, tz),)


def _first_instant_at(wall: datetime, tz: tzinfo) -> datetime:
    """The wall time as an aware datetime: first occurrence if repeated, gap end if skipped."""
    (instant,) = _wall_instants(wall, tz, all_occurrences=False)
    return (_EPOCH_UTC + timedelta(seconds=instant)).astimezone(tz)


class _CronFields(NamedTuple):
    """A validated cron: its raw fields and what croniter is given to evaluate them."""

    fields: list[str]
    expression: str
    day_or: bool


def _value(token: str, name: str) -> int:
    low, high = _RANGES[name]
    if token.isdigit():
        number = int(token)
    elif token.lower() in _NAMES.get(name, {}):
        return _NAMES[name][token.lower()]
    else:
        raise ValueError(f"{token!r} is not a number")
    if not low <= number <= high:
        raise ValueError(f"{number} is out of range {low}-{high}")
    return number


def _expand(field: str, name: str) -> set[int]:
    """The values a standard field (lists, ranges, steps, names, ``*``, ``?``) stands for."""
    low, high = _RANGES[name]
    values: set[int] = set()
    for term in field.split(","):
        base, slash, step_text = term.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*" or (base == "?" and name in ("day-of-month", "day-of-week")):
            first, last = low, (6 if name == "day-of-week" else high)
        elif "-" in base:
            left, _, right = base.partition("-")
            first, last = _value(left, name), _value(right, name)
            if first > last:
                raise ValueError(f"range {base!r} runs backwards")
        else:
            first = _value(base, name)
            last = high if slash else first
        values.update(range(first, last + 1, step))
    if name == "day-of-week" and 7 in values:
        values = (values - {7}) | {0}
    return values


def _is_extension(field: str, name: str) -> bool:
    """Whether a day field uses ``L``, ``nW`` or ``n#k``, which croniter evaluates itself."""
    upper = field.upper()
    if _HASHED.search(field):
        return False
    if name == "day-of-month":
        return "L" in upper or "W" in upper
    return name == "day-of-week" and ("#" in upper or "L" in upper)


def _canonical(values: set[int], name: str) -> str:
    low, high = _RANGES[name]
    full = set(range(low, 7 if name == "day-of-week" else high + 1))
    return "*" if values == full else ",".join(map(str, sorted(values)))


def _parse_cron(cron: str, with_seconds: bool) -> _CronFields:
    """Split and validate a cron (seconds first when ``with_seconds``).

    Standard fields are expanded here and handed to croniter as explicit lists, because croniter
    6 mis-reads some of them (``5-5`` as ``*``, ``5-5/3`` as ``*/3``, ``0-6`` in day-of-week as
    ``*`` which then turns day-of-month OR day-of-week into AND). Only the extensions (``L``,
    ``nW``, ``n#k``) go to croniter as written.
    """
    if not isinstance(cron, str) or not cron.strip():
        raise ValueError("invalid cron: the expression is empty")
    text = " ".join(cron.split())
    if text.startswith("@"):
        body = _NICKNAMES.get(text.lower())
        if body is None:
            known = ", ".join(_NICKNAMES)
            raise ValueError(f"invalid cron {cron!r}: unknown nickname (use one of {known})")
        text = ("0 " if with_seconds else "") + body
    fields = text.split(" ")
    names: tuple[str, ...] = (("second",) if with_seconds else ()) + _FIELDS
    if len(fields) != len(names):
        if len(fields) == 6 and not with_seconds:
            why = "6 fields need withSeconds: true (the first field is then the seconds)"
        elif with_seconds:
            why = f"withSeconds: true expects 6 fields ({' '.join(names)}), got {len(fields)}"
        else:
            why = f"expected 5 fields ({' '.join(names)}), got {len(fields)}"
        raise ValueError(f"invalid cron {cron!r}: {why}")
    expanded: dict[str, set[int] | None] = {}
    canonical: list[str] = []
    for index, (name, field) in enumerate(zip(names, fields, strict=True)):
        try:
            values = _expand(field, name)
            expanded[name] = values
            canonical.append(_canonical(values, name))
            continue
        except ValueError as err:
            reason = str(err)
        probe = ["*"] * len(fields)
        probe[index] = field
        if _is_extension(field, name):
            try:
                croniter(" ".join(probe), _PROBE_START, second_at_beginning=with_seconds)
            except CroniterError:
                pass
            else:  # an extension croniter evaluates itself
                expanded[name] = None
                canonical.append(field)
                continue
        raise ValueError(
            f"invalid cron {cron!r}: {name} field {field!r} is not valid: {reason} "
            f"(allowed: {_ALLOWED[name]}, lists a,b, ranges a-b, steps */n)"
        )
    dom, dow = expanded["day-of-month"], expanded["day-of-week"]
    day_or = True
    if dom is not None and dow is not None:
        if fields[-3][0] in "*?" or fields[-1][0] in "*?":
            day_or = False  # Vixie: a day field starting with '*' makes the two an AND
        elif canonical[-3] == "*" or canonical[-1] == "*":
            canonical[-3] = canonical[-1] = "*"  # OR with a field that allows every day
    return _CronFields(fields, " ".join(canonical), day_or)


class CronSchedule:
    """The ticks of one Schedule trigger: a cron evaluated on the wall clock of a zone."""

    def __init__(self, cron: str, timezone: str | None = "UTC", with_seconds: bool = False):
        parsed = _parse_cron(cron, with_seconds)
        fields = parsed.fields
        self.cron = cron
        self.with_seconds = with_seconds
        self.tz = resolve_zone(timezone)
        self.timezone = _zone_name(self.tz)
        self.expression = " ".join(fields)
        self._croniter_expression = parsed.expression
        self._day_or = parsed.day_or
        minute, hour = fields[-5], fields[-4]
        # Vixie cron: '*' in the minute or hour field makes a wildcard job (see module docstring).
        self.wildcard = minute.startswith("*") or hour.startswith("*")
        try:
            next(self._walls(_PROBE_START, forward=True, strict=True))
        except CroniterBadDateError:
            raise ValueError(
                f"invalid cron {cron!r}: it never fires (day-of-month {fields[-3]!r} "
                f"never occurs in month {fields[-2]!r})"
            ) from None

    def __repr__(self) -> str:
        seconds = ", with_seconds=True" if self.with_seconds else ""
        return f"CronSchedule({self.cron!r}, {self.timezone!r}{seconds})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CronSchedule):
            return NotImplemented
        return (self.expression, self.timezone, self.with_seconds) == (
            other.expression,
            other.timezone,
            other.with_seconds,
        )

    def __hash__(self) -> int:
        return hash((self.expression, self.timezone, self.with_seconds))

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment``."""
        _require_aware(moment, "moment")
        for instant in self._walk(_floor_seconds(moment) + 1, forward=True):
            return self._local(instant)
        raise ValueError(f"cron {self.cron!r} has no tick after {moment.isoformat()}")

    def previous_before(self, moment: datetime) -> datetime:
        """The last tick strictly before ``moment``."""
        _require_aware(moment, "moment")
        for instant in self._walk(_ceil_seconds(moment) - 1, forward=False):
            return self._local(instant)
        raise ValueError(f"cron {self.cron!r} has no tick before {moment.isoformat()}")

    def ticks_between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Every tick with ``start <= tick <= end``, in order (empty when start > end)."""
        _require_aware(start, "start")
        _require_aware(end, "end")
        return self._between(_ceil_seconds(start), _floor_seconds(end))

    def is_tick(self, moment: datetime) -> bool:
        """Whether the schedule fires exactly at ``moment``."""
        _require_aware(moment, "moment")
        micros = _micros(moment)
        if micros % 1_000_000:
            return False
        return next(self._between(micros // 1_000_000, micros // 1_000_000), None) is not None

    def start_of_day(self, day: date) -> datetime:
        """The first instant of ``day`` in the trigger's zone (usually its 00:00)."""
        return _first_instant_at(datetime.combine(day, time()), self.tz)

    def end_of_day(self, day: date) -> datetime:
        """The last microsecond of ``day`` in the trigger's zone (usually 23:59:59.999999)."""
        return self.start_of_day(day + timedelta(days=1)) - _MICRO

    def _local(self, instant: int) -> datetime:
        return (_EPOCH_UTC + timedelta(seconds=instant)).astimezone(self.tz)

    def _between(self, lo: int, hi: int) -> Iterator[datetime]:
        if lo > hi:
            return
        for instant in self._walk(lo, forward=True):
            if instant > hi:
                return
            yield self._local(instant)

    def _walls(self, wall: datetime, *, forward: bool, strict: bool = False) -> Iterator[datetime]:
        """Naive wall-clock ticks from ``wall`` (inclusive) onwards, or backwards.

        croniter gives up (CroniterBadDateError) past the last matching date; the walk then
        ends, unless ``strict`` asks for the error.
        """
        it = croniter(
            self._croniter_expression,
            wall - _SECOND if forward else wall + _SECOND,
            ret_type=datetime,
            day_or=self._day_or,
            second_at_beginning=self.with_seconds,
            implement_cron_bug=True,
        )
        step = it.get_next if forward else it.get_prev
        while True:
            try:
                yield step()
            except CroniterBadDateError:
                if strict:
                    raise
                return

    def _walk(self, bound: int, *, forward: bool) -> Iterator[int]:
        """Tick instants from ``bound`` (inclusive) onwards (or backwards), in order, unique.

        Wall ticks are visited in order. Mapping a wall tick to its earliest instant is
        monotonic (its latest one, going backwards), so that instant is emitted in order; the
        second occurrence of a repeated wall time waits in a heap until the walk has passed it.
        Keys are instants going forwards and negated instants going backwards, so that the same
        code handles both directions.

        Near a change of UTC offset, a wall time up to the size of the change before
        ``bound``'s own wall time (after it, going backwards) can still map to an instant on the
        right side of ``bound`` (a repeated hour's second pass, a skipped hour's end), so the
        walk then starts that much earlier (plus an hour to spare) and filters by ``bound``.
        """
        sign = 1 if forward else -1
        tz = self.tz
        offsets = [_offset_at(bound + delta, tz) for delta in (-_NEAR, 0, _NEAR)]
        margin = 0
        if len(set(offsets)) > 1:
            margin = max(offsets) - min(offsets) + 3600
        wall = _wall_of(bound - sign * margin, tz)
        key_bound = sign * bound
        pending: list[int] = []
        last: int | None = None
        for tick in self._walls(wall, forward=forward):
            keys = sorted(sign * i for i in _wall_instants(tick, tz, all_occurrences=self.wildcard))
            if not keys:
                continue
            head = keys[0]
            for key in keys[1:]:
                heapq.heappush(pending, key)
            while pending and pending[0] <= head:
                key = heapq.heappop(pending)
                if key >= key_bound and key != last:
                    last = key
                    yield sign * key
            if head >= key_bound and head != last:
                last = head
                yield sign * head
        while pending:
            key = heapq.heappop(pending)
            if key >= key_bound and key != last:
                last = key
                yield sign * key


def _as_bound(value: datetime | date, schedule: CronSchedule, *, end: bool) -> datetime:
    if isinstance(value, datetime):
        _require_aware(value, "end" if end else "start")
        return value
    if isinstance(value, date):
        return schedule.end_of_day(value) if end else schedule.start_of_day(value)
    raise TypeError(f"expected a date or datetime, got {type(value).__name__}")


def plan_backfill(
    schedule: CronSchedule,
    start: datetime | date,
    end: datetime | date,
    *,
    max_ticks: int | None = None,
) -> list[datetime]:
    """Every tick a backfill from ``start`` to ``end`` (both inclusive) replays, in order.

    A date-only ``start`` means 00:00 of that day in the trigger's zone; a date-only ``end``
    means the end of that day (23:59:59.999999). ``max_ticks`` guards against a range that
    would create an unreasonable number of executions.
    """
    lo = _as_bound(start, schedule, end=False)
    hi = _as_bound(end, schedule, end=True)
    if _micros(lo) > _micros(hi):
        raise ValueError(
            f"backfill start {lo.isoformat()} is after its end {hi.isoformat()}"
            f" (time zone {schedule.timezone})"
        )
    ticks: list[datetime] = []
    for tick in schedule.ticks_between(lo, hi):
        ticks.append(tick)
        if max_ticks is not None and len(ticks) > max_ticks:
            raise ValueError(
                f"backfill from {lo.isoformat()} to {hi.isoformat()} would create more than "
                f"{max_ticks} executions for cron {schedule.cron!r}"
            )
    return ticks


def parse_when(text: str, tz: tzinfo | str | None) -> datetime | date:
    """Parse an ISO-8601 date (→ ``date``) or date-time (→ aware ``datetime`` in ``tz``).

    A date-time without offset is a wall time in ``tz`` (first occurrence if repeated, the end
    of the gap if skipped); ``Z`` or an explicit offset is honoured and the instant is then
    expressed in ``tz``.
    """
    zone = tz if isinstance(tz, tzinfo) else resolve_zone(tz)
    raw = text.strip() if isinstance(text, str) else ""
    hint = (
        f"invalid date/time {text!r}: expected ISO-8601 such as 2024-01-31, "
        "2024-01-31T09:00:00 or 2024-01-31T09:00:00+01:00"
    )
    if not raw:
        raise ValueError(hint)
    try:
        if "T" not in raw.upper() and ":" not in raw and " " not in raw:
            return date.fromisoformat(raw)
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(hint) from None
    if moment.tzinfo is None:
        whole = _first_instant_at(moment.replace(microsecond=0), zone)
        return whole + timedelta(microseconds=moment.microsecond)
    return moment.astimezone(zone)


def missed_ticks(
    schedule: CronSchedule,
    last_tick: datetime | None,
    now: datetime,
    policy: RecoverPolicy | str,
) -> list[datetime]:
    """Ticks after ``last_tick`` up to ``now`` (inclusive) that did not run, per the policy.

    ``ALL`` returns all of them, ``LAST`` only the newest, ``NONE`` none. Without a
    ``last_tick`` (the trigger never fired) nothing counts as missed. A tick exactly at ``now``
    is due and not yet run, so it is included.
    """
    mode = policy.upper() if isinstance(policy, str) else policy
    if mode not in ("ALL", "LAST", "NONE"):
        raise ValueError(f"recoverMissedSchedules must be ALL, LAST or NONE, not {policy!r}")
    _require_aware(now, "now")
    if last_tick is not None:
        _require_aware(last_tick, "last_tick")
    if last_tick is None or mode == "NONE" or _micros(last_tick) >= _micros(now):
        return []
    # Compare instants, not datetimes: Python compares two datetimes of the same zone by wall
    # clock, which would merge the two 02:00 of a fall-back night.
    after = _floor_seconds(last_tick) + 1
    if mode == "ALL":
        return list(schedule._between(after, _floor_seconds(now)))
    newest = schedule.previous_before(now + _MICRO)
    return [newest] if _micros(newest) >= after * 1_000_000 else []
