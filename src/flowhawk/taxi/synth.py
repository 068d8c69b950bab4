"""Deterministic synthetic NYC taxi months in the exact shape of the course's CSV files.

Shapes copied from the real ``green_tripdata_2020-10.csv.gz`` (DataTalksClub release):

* CRLF line ends, a header row, no quoting, empty fields for missing values;
* timestamps ``YYYY-MM-DD HH:MM:SS``; money written shortest (``5``, ``7.5``, ``0.5``,
  ``-2.5``, ``1.58``); distances with two decimals and no leading zero (``.79``, ``4.40``);
  integers as ``1`` (never ``1.0``); ``ehail_fee`` always empty;
* rows with a VendorID come first, roughly in pickup order; rows without one follow. Those
  come from another source: their times are whole minutes (a few have seconds), and
  store_and_fwd_flag, RatecodeID, passenger_count, payment_type, trip_type and
  congestion_surcharge are empty, fares have cents and the tip is mostly ``2.75``;
* a few pickups fall in the previous or next month (the real month has 9 of 95,120);
* congestion_surcharge is empty before February 2019, when the surcharge began.

Speed: trips are drawn from a pool of pre-formatted "templates" (vendor, duration and every
field after the dropoff time), so a row costs a couple of list look-ups and one string join;
pure Python reaches several hundred thousand rows a second.

Yellow files get the same conventions (line ends, number and empty-field shapes) with the
yellow column order; no real yellow month was at hand to compare against.

Duplicates: real months may hold rows that repeat the course's ``unique_row_id`` key
(VendorID, pickup, dropoff, PU/DO location, fare, distance), which the course's MERGE drops
(green 2020-10 has none).
This maker never repeats a key, so a month's row count equals its number of distinct ids
and loaded-row assertions stay exact. Templates have distinct ``PU||DO||fare||distance``
texts, and a row's key is its (pickup second, template) pair, re-drawn on repeat.

Determinism: everything comes from one ``random.Random`` seeded with (taxi, year, month,
seed); gzip output has no name and mtime 0, so the bytes are the same on every run.
"""

from __future__ import annotations

import bisect
import calendar
import gzip as gzip_module
import itertools
import math
import os
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from flowhawk.taxi.layout import TaxiLayout, layout_for

T = TypeVar("T")

#: Share of rows without a VendorID. Green: the real 2020-10 month (42,510 of 95,120).
#: Yellow: a small share, so that the NULL-VendorID path is always exercised.
DEFAULT_MISSING_VENDOR = {"green": 42510 / 95120, "yellow": 0.03}
DEFAULT_OUT_OF_MONTH = 0.001
GZIP_LEVEL = 1
_CHUNK_ROWS = 50_000
_MAX_TEMPLATES = 16_384
_DAY = 86_400

#: Relative pickups per hour of day, from the real green month.
_HOURS_VENDOR = (
    690, 454, 239, 148, 134, 345, 1091, 2103, 2812, 2927, 3073, 3233,
    3355, 3241, 3781, 4099, 4130, 4207, 3642, 2986, 2131, 1508, 1228, 1053,
)  # fmt: skip
_HOURS_NO_VENDOR = (
    142, 76, 53, 145, 648, 738, 1209, 2195, 3209, 3803, 4030, 3855,
    3851, 3411, 3177, 2708, 2384, 1949, 1408, 1066, 855, 626, 568, 404,
)  # fmt: skip

#: Busy zones per colour (the rest of 1..265 share the remaining weight).
_HOT_ZONES = {
    "green": (74, 75, 41, 42, 244, 95, 166, 97, 7, 82, 129, 61, 65, 260, 116, 152, 43, 236),
    "yellow": (237, 236, 161, 162, 230, 186, 170, 142, 48, 234, 132, 138, 239, 163, 68, 79),
}
_HOT_ZONES_NO_VENDOR = (61, 42, 188, 76, 74, 89, 242, 51, 39, 75, 35, 37, 225, 17, 177)


@dataclass(frozen=True)
class SynthResult:
    """What one ``write_month`` call wrote."""

    path: Path
    taxi: str
    year: int
    month: int
    rows: int
    rows_without_vendor: int
    rows_out_of_month: int
    seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def _money(cents: int) -> str:
    """Shortest decimal text of an amount, as the real files (and PostgreSQL float8) write it."""
    if cents < 0:
        return "-" + _money(-cents)
    whole, frac = divmod(cents, 100)
    if frac == 0:
        return str(whole)
    if frac % 10 == 0:
        return f"{whole}.{frac // 10}"
    return f"{whole}.{frac:02d}"


def _distance(hundredths: int) -> str:
    """Distance text as the real files write it: two decimals, no leading zero (``.79``)."""
    whole, frac = divmod(hundredths, 100)
    return f"{whole or ''}.{frac:02d}"


class _Choice(Generic[T]):
    """A weighted choice whose cumulative weights are summed once, not on every draw."""

    def __init__(self, pairs: Sequence[tuple[T, float]]) -> None:
        self.values = [value for value, _ in pairs]
        self.cumulative = list(itertools.accumulate(weight for _, weight in pairs))
        self.total = self.cumulative[-1]
        self.last = len(self.values) - 1

    def draw(self, rng: random.Random) -> T:
        index = bisect.bisect(self.cumulative, rng.random() * self.total)
        return self.values[min(index, self.last)]


_RATECODE = _Choice([("1", 98.3), ("5", 1.2), ("2", 0.2), ("4", 0.1), ("3", 0.03), ("99", 0.002)])
_PAYMENT = _Choice([("1", 57), ("2", 42), ("3", 0.7), ("4", 0.2), ("5", 0.002)])
_PASSENGERS = _Choice(
    [("1", 87.3), ("2", 5.8), ("5", 2.7), ("6", 2.4), ("3", 0.9), ("0", 0.5), ("4", 0.3)]
)
_EXTRA = _Choice([(0, 63), (100, 20), (50, 14), (275, 2), (375, 1)])
_TOLLS = _Choice([(0, 96.2), (612, 3.4), (1224, 0.2), (280, 0.1), (229, 0.1)])
_TOLLS_NO_VENDOR = _Choice([(0, 87.2), (612, 10.9), (229, 0.6), (280, 0.5), (1224, 0.3)])
_CONGESTION_GREEN = _Choice([(0, 79), (275, 20.8), (250, 0.2)])


class _Zones:
    """Pickup/dropoff zone sampler: busy zones first, then uniform over 1..265."""

    def __init__(self, hot: Sequence[int], hot_share: float) -> None:
        self.hot = [str(z) for z in hot]
        self.hot_share = hot_share
        self.all = [str(z) for z in range(1, 266)]

    def draw(self, rng: random.Random) -> str:
        if rng.random() < self.hot_share:
            return rng.choice(self.hot)
        return rng.choice(self.all)


@dataclass(frozen=True)
class _Trip:
    """One drawn trip, before it is laid out in a colour's column order."""

    vendor: str
    seconds: int
    store_and_fwd: str
    ratecode: str
    pu: str
    do: str
    passengers: str
    distance: int
    fare: int
    extra: int
    mta: int
    tip: int
    tolls: int
    improvement: int
    payment: str
    trip_type: str
    congestion: int | None

    @property
    def key_text(self) -> str:
        """This trip's part of the course's md5 key text after the times, as PostgreSQL renders it."""
        return f"{self.pu}{self.do}{_money(self.fare)}{_money(self.distance)}"

    def total(self) -> int:
        return (
            self.fare
            + self.extra
            + self.mta
            + self.tip
            + self.tolls
            + self.improvement
            + (self.congestion or 0)
        )


class _TripDrawer:
    """Draws plausible trips; distributions approximate the real green 2020-10 month."""

    def __init__(self, taxi: str, year: int, month: int, rng: random.Random) -> None:
        self.taxi = taxi
        self.rng = rng
        self.has_congestion = (year, month) >= (2019, 2)
        self.zones = _Zones(_HOT_ZONES[taxi], 0.55 if taxi == "green" else 0.6)
        self.zones_no_vendor = _Zones(_HOT_ZONES_NO_VENDOR, 0.3)

    def with_vendor(self) -> _Trip:
        rng = self.rng
        green = self.taxi == "green"
        if green:
            vendor = "2" if rng.random() < 0.81 else "1"
        else:
            vendor = "2" if rng.random() < 0.65 else "1"
        dispatched = green and rng.random() < 0.031
        if dispatched:
            ratecode = "5"
        else:
            ratecode = _RATECODE.draw(rng)
        if rng.random() < 0.06:
            distance = 0
            seconds = rng.randint(20, 900)
        else:
            distance = min(6000, max(1, int(rng.lognormvariate(math.log(1.8), 0.85) * 100)))
            mph = max(4.0, rng.gauss(11.0, 3.0))
            seconds = int(distance / 100 / mph * 3600) + rng.randint(30, 240)
        seconds = min(seconds, 4 * 3600)
        if ratecode == "2":
            fare = 5200
        elif ratecode == "5":
            fare = rng.randint(5, 80) * 100
        else:
            units = 2.5 + 2.5 * distance / 100 + 0.35 * seconds / 60
            fare = max(250, round(units * 2) * 50)
        payment = _PAYMENT.draw(rng)
        if payment == "1" and rng.random() < 0.84:
            tip = 275 if rng.random() < 0.08 else round(fare * rng.uniform(0.1, 0.3))
        else:
            tip = 0
        tolls = _TOLLS.draw(rng)
        extra = _EXTRA.draw(rng)
        mta = 0 if dispatched or rng.random() < 0.04 else 50
        congestion: int | None = None
        if self.has_congestion:
            if green:
                congestion = _CONGESTION_GREEN.draw(rng)
            else:
                congestion = 250 if rng.random() < 0.9 else 0
        improvement = 30
        if rng.random() < 0.003:
            # A voided trip: small negated charges, no tip, paid "no charge" or "dispute".
            payment = rng.choice(("3", "4"))
            fare = -rng.randint(5, 12) * 50
            extra, mta, tip, tolls, improvement = -min(extra, 100), -50, 0, 0, -30
            congestion = None if congestion is None else 0
        return _Trip(
            vendor=vendor,
            seconds=max(1, seconds),
            store_and_fwd="Y" if rng.random() < 0.007 else "N",
            ratecode=ratecode,
            pu=self.zones.draw(rng),
            do=self.zones.draw(rng),
            passengers=_PASSENGERS.draw(rng),
            distance=distance,
            fare=fare,
            extra=extra,
            mta=mta,
            tip=tip,
            tolls=tolls,
            improvement=improvement,
            payment=payment,
            trip_type=("2" if dispatched else "1") if green else "",
            congestion=congestion,
        )

    def without_vendor(self) -> _Trip:
        rng = self.rng
        distance = min(9000, max(1, int(rng.lognormvariate(math.log(4.1), 0.8) * 100)))
        if rng.random() < 0.013:
            distance = 0
        minutes = max(1, min(240, round(distance / 100 / rng.uniform(7.0, 16.0) * 60) + 4))
        fare = max(250, round((2.5 + 1.9 * distance / 100 + 0.3 * minutes) * 100))
        fare += rng.randint(-150, 150)
        tip = 275 if rng.random() < 0.927 else rng.choice((0, 0, 100, 160, 200, 300))
        tolls = _TOLLS_NO_VENDOR.draw(rng)
        return _Trip(
            vendor="",
            seconds=minutes * 60,
            store_and_fwd="",
            ratecode="",
            pu=self.zones_no_vendor.draw(rng),
            do=self.zones_no_vendor.draw(rng),
            passengers="",
            distance=distance,
            fare=fare,
            extra=100 if rng.random() < 0.001 else 0,
            mta=50 if rng.random() < 0.005 else 0,
            tip=tip,
            tolls=tolls,
            improvement=30,
            payment="",
            trip_type="",
            congestion=None,
        )


def _tail(layout: TaxiLayout, trip: _Trip) -> str:
    """Every field after the dropoff time, with the leading comma, in the layout's order."""
    congestion = "" if trip.congestion is None else _money(trip.congestion)
    money = _money
    fields: tuple[str, ...]
    if layout.colour == "green":
        fields = (
            trip.store_and_fwd,
            trip.ratecode,
            trip.pu,
            trip.do,
            trip.passengers,
            _distance(trip.distance),
            money(trip.fare),
            money(trip.extra),
            money(trip.mta),
            money(trip.tip),
            money(trip.tolls),
            "",
            money(trip.improvement),
            money(trip.total()),
            trip.payment,
            trip.trip_type,
            congestion,
        )
    else:
        fields = (
            trip.passengers,
            _distance(trip.distance),
            trip.ratecode,
            trip.store_and_fwd,
            trip.pu,
            trip.do,
            trip.payment,
            money(trip.fare),
            money(trip.extra),
            money(trip.mta),
            money(trip.tip),
            money(trip.tolls),
            money(trip.improvement),
            money(trip.total()),
            congestion,
        )
    return "," + ",".join(fields)


@dataclass
class _Pool:
    """Pre-formatted trips: ``heads[i]`` is ``"vendor,"``, ``tails[i]`` the rest of the row."""

    heads: list[str]
    seconds: list[int]
    tails: list[str]


def _pool(layout: TaxiLayout, draw: Callable[[], _Trip], size: int, seen_keys: set[str]) -> _Pool:
    """``size`` trips whose (vendor, key text) pairs are distinct, also from ``seen_keys``."""
    pool = _Pool([], [], [])
    attempts = 0
    while len(pool.tails) < size:
        trip = draw()
        attempts += 1
        key = f"{trip.vendor}|{trip.key_text}"
        if key in seen_keys:
            if attempts > size * 20:
                raise RuntimeError("could not draw enough distinct trip templates")
            continue
        seen_keys.add(key)
        pool.heads.append(trip.vendor + ",")
        pool.seconds.append(trip.seconds)
        pool.tails.append(_tail(layout, trip))
    return pool


def _spread(
    rng: random.Random, count: int, days: int, weights: Sequence[int], step: int
) -> list[int]:
    """``count`` ascending pickup offsets (seconds from the month start) over the month's hours.

    Hour h of every day gets its share ``weights[h]``; inside an hour the pickups are spread
    evenly with jitter, rounded down to ``step`` seconds (60 for whole-minute sources).
    """
    hour_weights = [weights[h % 24] for h in range(days * 24)]
    total = sum(hour_weights)
    offsets: list[int] = []
    rand = rng.random
    cumulative = 0
    previous_edge = 0
    for hour, weight in enumerate(hour_weights):
        cumulative += weight
        edge = count * cumulative // total
        in_hour = edge - previous_edge
        previous_edge = edge
        if not in_hour:
            continue
        base = hour * 3600
        width = 3600 / in_hour
        for j in range(in_hour):
            second = int((j + rand()) * width)
            offsets.append(base + second - second % step)
    return offsets


def _month_days(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def _clock_strings() -> list[str]:
    return [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]


_CLOCK: list[str] = []


def _generate(
    layout: TaxiLayout,
    year: int,
    month: int,
    rows: int,
    seed: int,
    missing_vendor: float,
    out_of_month: float,
) -> tuple[Iterator[list[str]], int, int]:
    """Plan a month; return (its CSV lines in chunks, rows without vendor, out-of-month rows)."""
    if not _CLOCK:
        _CLOCK.extend(_clock_strings())
    rng = random.Random(f"flowhawk-taxi:{layout.colour}:{year:04d}-{month:02d}:{seed}")
    days = _month_days(year, month)
    first = date(year, month, 1)
    # Day strings from the day before the month to three days after it: offsets in the row
    # loop are seconds from the previous day's midnight, so they are never negative.
    day_text = [f"{first + timedelta(days=d - 1)} " for d in range(days + 4)]
    month_start = _DAY
    month_end = _DAY * (days + 1)

    n_without = min(rows, round(rows * missing_vendor))
    n_with = rows - n_without
    n_out = min(rows, round(rows * out_of_month))
    if out_of_month > 0 and rows >= 100:
        n_out = max(n_out, 1)
    out_with_vendor = n_out <= n_with
    drawer = _TripDrawer(layout.colour, year, month, rng)
    pool_size = max(64, min(_MAX_TEMPLATES, rows))
    seen_keys: set[str] = set()
    pool_with = _pool(layout, drawer.with_vendor, pool_size if n_with else 0, seen_keys)
    pool_without = _pool(layout, drawer.without_vendor, pool_size if n_without else 0, seen_keys)

    def offsets_out(count: int, step: int) -> tuple[list[int], list[int]]:
        before = count // 2
        head = sorted(month_start - 1 - rng.randrange(2 * 3600) for _ in range(before))
        tail = sorted(month_end + rng.randrange(6 * 3600) for _ in range(count - before))
        return [o - o % step for o in head], [o - o % step for o in tail]

    blocks: list[tuple[_Pool, list[int], random.Random]] = []
    if n_with:
        in_month = n_with - (n_out if out_with_vendor else 0)
        offsets = [month_start + o for o in _spread(rng, in_month, days, _HOURS_VENDOR, 1)]
        if out_with_vendor and n_out:
            head, tail = offsets_out(n_out, 1)
            offsets = head + offsets + tail
        blocks.append((pool_with, offsets, random.Random(rng.getrandbits(64))))
    if n_without:
        in_month = n_without - (0 if out_with_vendor else n_out)
        offsets = [month_start + o for o in _spread(rng, in_month, days, _HOURS_NO_VENDOR, 60)]
        # A few of these rows carry seconds in the real file.
        for i in range(len(offsets)):
            if rng.random() < 0.007:
                offsets[i] += rng.randrange(1, 60)
        if not out_with_vendor and n_out:
            head, tail = offsets_out(n_out, 60)
            offsets = head + offsets + tail
        blocks.append((pool_without, offsets, random.Random(rng.getrandbits(64))))

    return _lines(blocks, day_text), n_without, n_out


def _lines(
    blocks: list[tuple[_Pool, list[int], random.Random]], day_text: list[str]
) -> Iterator[list[str]]:
    """The CSV lines of each block (pool and ascending pickup offsets), in chunks.

    Each block draws from a generator of its own, fixed when the month was planned.
    """
    clock = _CLOCK
    for pool, offsets, rng in blocks:
        heads, durations, tails = pool.heads, pool.seconds, pool.tails
        size = len(tails)
        rand = rng.random
        # A row's key is (pickup second, template); other blocks differ by vendor text.
        used: set[int] = set()
        lines: list[str] = []
        for pickup in offsets:
            t = int(rand() * size)
            key = pickup * size + t
            retries = 0
            while key in used:
                retries += 1
                if retries % 64 == 0:
                    # This second is crowded (only with absurd row counts): move on a second.
                    pickup += 1
                t = int(rand() * size)
                key = pickup * size + t
            used.add(key)
            dropoff = pickup + durations[t]
            lines.append(
                heads[t]
                + day_text[pickup // _DAY]
                + clock[pickup % _DAY]
                + ","
                + day_text[dropoff // _DAY]
                + clock[dropoff % _DAY]
                + tails[t]
            )
            if len(lines) >= _CHUNK_ROWS:
                yield lines
                lines = []
        if lines:
            yield lines


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


def _write_rows(out: _Sink, header: bytes, chunks: Iterable[list[str]]) -> None:
    out.write(header)
    for lines in chunks:
        lines.append("")
        out.write("\r\n".join(lines).encode("ascii"))


def write_month(
    path: str | Path,
    taxi: str,
    year: int,
    month: int,
    rows: int,
    seed: int = 0,
    gzip: bool = True,
    out_of_month: float = DEFAULT_OUT_OF_MONTH,
    missing_vendor: float | None = None,
) -> SynthResult:
    """Write one synthetic month of ``taxi`` trips to ``path`` (gzip unless ``gzip=False``).

    ``rows`` is exact; ``missing_vendor`` is the share of rows without a VendorID (default
    per colour, see ``DEFAULT_MISSING_VENDOR``); ``out_of_month`` the share of pickups in the
    previous or next month (at least one when ``rows >= 100`` and the share is positive).
    The same arguments give the same bytes.
    """
    layout = layout_for(taxi)
    if not 1 <= month <= 12:
        raise ValueError(f"month must be 1..12, got {month}")
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    share = DEFAULT_MISSING_VENDOR[taxi] if missing_vendor is None else missing_vendor
    for name, value in (("missing_vendor", share), ("out_of_month", out_of_month)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be within 0..1, got {value}")
    started = time.perf_counter()
    chunks, n_without, n_out = _generate(layout, year, month, rows, seed, share, out_of_month)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    header = (",".join(layout.csv_columns) + "\r\n").encode("ascii")
    # Written beside the target and renamed, so a reader never sees half a month.
    partial = target.with_name(target.name + ".part")
    with open(partial, "wb") as raw:
        if gzip:
            with gzip_module.GzipFile(
                filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0
            ) as packed:
                _write_rows(packed, header, chunks)
        else:
            _write_rows(raw, header, chunks)
    os.replace(partial, target)
    return SynthResult(
        path=target,
        taxi=taxi,
        year=year,
        month=month,
        rows=rows,
        rows_without_vendor=n_without,
        rows_out_of_month=n_out,
        seconds=time.perf_counter() - started,
    )


def write_months(
    directory: str | Path,
    taxi: str,
    year: int,
    months: Iterable[int],
    rows: int,
    seed: int = 0,
    gzip: bool = True,
) -> list[SynthResult]:
    """Write several months of one year under ``directory`` with the course's file names."""
    layout = layout_for(taxi)
    folder = Path(directory)
    results = []
    for month in months:
        name = layout.filename(year, month) + (".gz" if gzip else "")
        results.append(write_month(folder / name, taxi, year, month, rows, seed=seed, gzip=gzip))
    return results


_YEAR_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def parse_year_month(text: str) -> tuple[int, int]:
    """``'2019-01'`` → ``(2019, 1)``, with a clear error for anything else."""
    match = _YEAR_MONTH.match(text.strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"expected a month as YYYY-MM (e.g. 2019-01), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def month_range(start: str, end: str) -> list[tuple[int, int]]:
    """Every (year, month) from ``start`` to ``end`` inclusive, both ``YYYY-MM``."""
    y, m = parse_year_month(start)
    end_ym = parse_year_month(end)
    if (y, m) > end_ym:
        raise ValueError(f"start month {start} is after end month {end}")
    months = []
    while (y, m) <= end_ym:
        months.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return months


def synth_main(
    out_dir: str | Path,
    taxi: str,
    start: str,
    end: str,
    rows: int,
    seed: int = 0,
    echo: Callable[[str], None] | None = print,
) -> list[SynthResult]:
    """``flowhawk taxi synth``: write gzip months ``start``..``end`` into ``out_dir/<taxi>/``.

    Files are laid out as the course downloads them (``green/green_tripdata_2019-01.csv.gz``),
    so ``out_dir`` can be served over HTTP as a stand-in for the release downloads.
    """
    layout = layout_for(taxi)
    folder = Path(out_dir) / taxi
    results = []
    for year, month in month_range(start, end):
        path = folder / (layout.filename(year, month) + ".gz")
        result = write_month(path, taxi, year, month, rows, seed=seed)
        results.append(result)
        if echo is not None:
            echo(
                f"{path}: {result.rows} rows ({result.rows_without_vendor} without VendorID, "
                f"{result.rows_out_of_month} outside the month) in {result.seconds:.2f}s "
                f"({result.rows_per_second:,.0f} rows/s)"
            )
    return results
