"""The reader: a month's CSV (gzip or plain, HTTP(S) or a local file) to COPY CSV rows.

It runs as a subprocess (``python -m flowhawk.taxi.reader``) so that download,
decompression, checks and md5 use the second core while PostgreSQL parses the rows on the
first. It never holds more than a few MiB of the file, never writes it to disk, and
writes to stdout, for each data row, ``<unique_row_id>,<the row as in the file>``; the
loader COPYs that into ``(unique_row_id, <csv columns>)``.

Checks, in the order met: gzip framing (an HTML page or a truncated stream is refused),
the header, every row's column count, and the fields ``unique_row_id`` is built from
(timestamps and numbers must be in a form whose PostgreSQL text is known). The other
fields are checked by PostgreSQL itself when it stores them; the loader turns its
``COPY ..., line N, column C`` context into the file's line.

The last line on stderr is a JSON object: ``{"rows": .., "duplicates": .., "bytes": ..}``
on success, ``{"error": "..."}`` on failure (exit status 2).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import zlib
from binascii import hexlify
from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import md5
from types import ModuleType
from typing import BinaryIO

from flowhawk.taxi.layout import layout_for
from flowhawk.taxi.pgtext import number_text, timestamp_text

_fast_rows: ModuleType | None
try:  # the optional C row loop (see _rows.c); FLOWHAWK_TAXI_PURE_PYTHON=1 turns it off
    from flowhawk.taxi import _rows as _fast_rows
except ImportError:  # pragma: no cover - built by default; absent without a C compiler
    _fast_rows = None

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
#: ids are also kept as 8-byte prefixes in 256 buckets to count in-file duplicates in
#: bounded memory (8 bytes a row); two different rows share a prefix with probability
#: about rows² / 2⁶⁵ (1e-6 for a 7.7 M-row month).
_BUCKETS = 256


class ReadError(Exception):
    """A problem with the source; the message names the file, line and column."""


@dataclass(frozen=True)
class KeyPlan:
    """Where the ``unique_row_id`` fields sit in a CSV row of one layout."""

    columns: tuple[str, ...]
    vendor: int
    pickup: int
    dropoff: int
    pu: int
    do: int
    fare: int
    distance: int

    @property
    def split_at(self) -> int:
        return (
            max(self.vendor, self.pickup, self.dropoff, self.pu, self.do, self.fare, self.distance)
            + 1
        )


def key_plan(taxi: str) -> KeyPlan:
    layout = layout_for(taxi)
    cols = layout.csv_columns
    return KeyPlan(
        columns=cols,
        vendor=cols.index("VendorID"),
        pickup=cols.index(layout.pickup_column),
        dropoff=cols.index(layout.dropoff_column),
        pu=cols.index("PULocationID"),
        do=cols.index("DOLocationID"),
        fare=cols.index("fare_amount"),
        distance=cols.index("trip_distance"),
    )


# -- bytes in --------------------------------------------------------------------------
def _http_chunks(url: str) -> Iterator[bytes]:
    """The body of a GET, streamed; redirects followed (the release files redirect to a CDN).

    The standard library's client rather than httpx: this runs in a fresh process on the
    load's critical path, and importing httpx there (with the CLI it imports when click and
    rich are installed) measured 0.2 s before the first byte; urllib costs ~0.02 s."""
    import http.client
    import urllib.error
    import urllib.request

    from flowhawk.util.jdbc import redact_url

    shown = redact_url(url)
    received = 0
    request = urllib.request.Request(url, headers={"User-Agent": "flowhawk"})
    try:
        with urllib.request.urlopen(request, timeout=30.0) as resp:
            while chunk := resp.read1(CHUNK):
                received += len(chunk)
                yield chunk
            if resp.length:  # http.client leaves a short body to the caller to notice
                raise http.client.IncompleteRead(b"", resp.length)
    except urllib.error.HTTPError as exc:
        raise ReadError(f"HTTP {exc.code} {exc.reason} from {shown}") from None
    except (OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        detail = str(reason) or type(reason).__name__
        if isinstance(exc, http.client.IncompleteRead):
            detail = (
                f"incomplete read: the server closed the connection {exc.expected:,} bytes early"
            )
        raise ReadError(f"download of {shown} failed after {received:,} bytes: {detail}") from None


def _file_chunks(path: str) -> Iterator[bytes]:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, generator-owned
    except OSError as exc:
        raise ReadError(f"cannot open {path}: {exc.strerror}") from None
    with handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def source_chunks(source: str) -> Iterator[bytes]:
    """The raw bytes of an ``http(s)://`` URL or a local path."""
    if source.startswith(("http://", "https://")):
        return _http_chunks(source)
    return _file_chunks(source)


def _describe_start(data: bytes) -> str:
    head = data[:200].lstrip().lower()
    if (
        head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body"))
        or b"<html" in head
    ):
        return "an HTML page"
    preview = data[:40].decode("utf-8", "replace").splitlines()[0] if data else ""
    return f"data starting with {preview!r}"


def decompressed(chunks: Iterator[bytes], name: str, expect_gzip: bool) -> Iterator[bytes]:
    """Gunzip when the data is gzip (by its magic bytes), refuse non-gzip when gzip was
    expected, and refuse a stream that ends inside a gzip member."""
    first = b""
    for chunk in chunks:
        first += chunk
        if len(first) >= 2:
            break
    if not first:
        raise ReadError(f"{name}: the file is empty (0 bytes)")
    if not first.startswith(GZIP_MAGIC):
        if expect_gzip:
            raise ReadError(f"{name}: expected gzip data but got {_describe_start(first)}")
        yield first
        yield from chunks
        return
    inflater = zlib.decompressobj(31)
    consumed = 0
    in_member = False
    for chunk in _chain([first], chunks):
        consumed += len(chunk)
        data = chunk
        while data:
            try:
                out = inflater.decompress(data, 4 * CHUNK)
            except zlib.error as exc:
                raise ReadError(
                    f"{name}: corrupt gzip data after {consumed:,} bytes: {exc}"
                ) from None
            in_member = True
            if out:
                yield out
            if inflater.eof:
                data = inflater.unused_data
                inflater = zlib.decompressobj(31)
                in_member = False
                if data.strip(b"\0") == b"":
                    data = b""
                elif not data.startswith(GZIP_MAGIC[: len(data)]):
                    raise ReadError(f"{name}: unexpected data after the end of the gzip stream")
            else:
                data = inflater.unconsumed_tail
    if in_member:
        raise ReadError(
            f"{name}: truncated gzip file: the data ends after {consumed:,} compressed bytes, "
            "in the middle of the gzip stream (incomplete download?)"
        )


def _chain(first: list[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
    yield from first
    yield from rest


# -- rows out --------------------------------------------------------------------------
class RowConverter:
    """Turns decompressed CSV bytes into COPY rows with their id, checking as it goes."""

    def __init__(self, taxi: str, name: str) -> None:
        self.plan = key_plan(taxi)
        self.name = name
        self.ncols = len(self.plan.columns)
        self.rows = 0
        self.line_no = 1  # the header is line 1
        self._numbers: dict[bytes, bytes] = {b"": b""}
        self._dates: set[bytes] = set()
        self._times: set[bytes] = set()
        self._buckets = [bytearray() for _ in range(_BUCKETS)]
        self.sep = b"\n"

    def header(self, line: bytes) -> None:
        """Check the header line (without its line end)."""
        text = line.removeprefix(b"\xef\xbb\xbf").decode("utf-8", "replace")
        found = [c.strip().strip('"') for c in text.split(",")]
        if found != list(self.plan.columns):
            missing = [c for c in self.plan.columns if c not in found]
            extra = [c for c in found if c not in self.plan.columns]
            detail = []
            if missing:
                detail.append(f"missing {', '.join(missing)}")
            if extra:
                detail.append(f"unexpected {', '.join(repr(c) for c in extra)}")
            if not detail:
                detail.append("columns in another order")
            raise ReadError(
                f"{self.name}: line 1: the header does not match the {self.plan_name()} layout "
                f"({'; '.join(detail)}): expected {','.join(self.plan.columns)}"
            )

    def plan_name(self) -> str:
        return "green" if "lpep_pickup_datetime" in self.plan.columns else "yellow"

    def _error(self, line_no: int, column: int | None, message: str) -> ReadError:
        where = f"{self.name}: line {line_no}"
        if column is not None:
            where += f", column {self.plan.columns[column]}"
        return ReadError(f"{where}: {message}")

    def _check_timestamp(self, raw: bytes, line_no: int, column: int) -> bytes:
        if not raw:
            return b""  # NULL in the table: COALESCE(..., '') in the formula
        text = timestamp_text(raw)
        if text is None:
            raise self._error(
                line_no,
                column,
                f"unparsable timestamp {raw.decode('utf-8', 'replace')!r} (expected YYYY-MM-DD HH:MM:SS)",
            )
        if len(raw) == 19:
            self._dates.add(raw[:10])
            self._times.add(raw[10:])
        return text

    def _number(self, raw: bytes, line_no: int, column: int) -> bytes:
        if not raw:
            return b""
        text = number_text(raw)
        if text is None:
            raise self._error(
                line_no, column, f"unparsable number {raw.decode('utf-8', 'replace')!r}"
            )
        if len(self._numbers) < 200_000:
            self._numbers[raw] = text
        return text

    def _slow_fields(self, line: bytes, line_no: int) -> list[bytes]:
        """Split a row the careful way (quotes) and report a wrong column count."""
        if b'"' in line:
            try:
                fields = next(csv.reader([line.decode("utf-8", "surrogateescape")], strict=True))
            except csv.Error as exc:
                raise self._error(line_no, None, f"malformed CSV: {exc}") from None
            parts = [f.encode("utf-8", "surrogateescape") for f in fields]
        else:
            parts = line.split(b",")
        if len(parts) != self.ncols:
            what = "missing" if len(parts) < self.ncols else "extra"
            raise self._error(
                line_no, None, f"expected {self.ncols} columns, found {len(parts)} ({what} columns)"
            )
        return parts

    def convert(self, lines: list[bytes], quoted: bool = True) -> bytes:
        """COPY rows for complete data lines (line ends removed); ``quoted``: some line may
        hold a double quote (then such lines are split as CSV).

        One tight loop per row: a column-wise variant (``map``/``zip`` over slices of one
        flat field list) measured slower, as it creates every field of every row."""
        plan = self.plan
        split_at = plan.split_at
        rest_commas = self.ncols - split_at - 1
        iv, ip, idr, ipu, ido, ifa, idi = (
            plan.vendor,
            plan.pickup,
            plan.dropoff,
            plan.pu,
            plan.do,
            plan.fare,
            plan.distance,
        )
        numbers = self._numbers
        dates, times = self._dates, self._times
        buckets = self._buckets
        out: list[bytes] = []
        append = out.append
        line_no = self.line_no
        for line in lines:
            line_no += 1
            p = line.split(b",", split_at)
            if (
                len(p) != split_at + 1
                or p[split_at].count(b",") != rest_commas
                or (quoted and b'"' in line)
            ):
                p = self._slow_fields(line, line_no)
            pu = p[ip]
            if len(pu) != 19 or pu[:10] not in dates or pu[10:] not in times:
                pu = self._check_timestamp(pu, line_no, ip)
            do = p[idr]
            if len(do) != 19 or do[:10] not in dates or do[10:] not in times:
                do = self._check_timestamp(do, line_no, idr)
            fare = p[ifa]
            fare_text = numbers.get(fare)
            if fare_text is None:
                fare_text = self._number(fare, line_no, ifa)
            dist = p[idi]
            dist_text = numbers.get(dist)
            if dist_text is None:
                dist_text = self._number(dist, line_no, idi)
            digest = md5(b"".join((p[iv], pu, do, p[ipu], p[ido], fare_text, dist_text))).digest()
            buckets[digest[0]] += digest[1:9]
            append(hexlify(digest) + b"," + line)
        self.rows += len(lines)
        self.line_no = line_no
        if not out:
            return b""
        append(b"")
        return b"\n".join(out)

    def convert_block(self, buf: bytes, start: int, end: int) -> bytes:
        """COPY rows for ``buf[start:end]``: complete lines, each ended by ``self.sep``.

        With the C row loop, the lines it accepts go through it and any other line (quoted,
        wrong column count, an unusual number or timestamp) through ``convert`` on its own,
        so both give the same rows and the same messages."""
        if end <= start:
            return b""
        fast = _fast_rows if use_fast_rows() else None
        if fast is None:
            lines = buf[start : end - len(self.sep)].split(self.sep)
            return self.convert(lines, b'"' in buf[start:end])
        plan = self.plan
        keys = (plan.vendor, plan.pickup, plan.dropoff, plan.pu, plan.do, plan.fare, plan.distance)
        crlf = self.sep == b"\r\n"
        out: list[bytes] = []
        pos = start
        while pos < end:
            block, pos, rows = fast.convert(buf, pos, end, self.ncols, keys, crlf, self._buckets)
            self.rows += rows
            self.line_no += rows
            out.append(block)
            if pos < end:
                line_end = buf.find(self.sep, pos, end)
                out.append(self.convert([buf[pos:line_end]]))
                pos = line_end + len(self.sep)
        return b"".join(out)

    def duplicates(self) -> int:
        """Rows whose id repeats an earlier row's (by 64-bit prefix, see ``_BUCKETS``)."""
        total = 0
        for bucket in self._buckets:
            if _fast_rows is not None:
                total += _fast_rows.count_duplicates(bucket)
                continue
            keys = memoryview(bucket).cast("Q")
            total += len(keys) - len(set(keys))
        return total


def use_fast_rows() -> bool:
    """Whether the C row loop is there and not turned off."""
    return _fast_rows is not None and os.environ.get("FLOWHAWK_TAXI_PURE_PYTHON", "") in ("", "0")


def convert_stream(data: Iterator[bytes], conv: RowConverter) -> Iterator[bytes]:
    """Split decompressed bytes into lines and convert them, chunk by chunk."""
    rest = b""
    header_seen = False
    for chunk in data:
        buf = rest + chunk if rest else chunk
        if not header_seen:
            end = buf.find(b"\n")
            if end < 0:
                if len(buf) > CHUNK:
                    raise ReadError(
                        f"{conv.name}: line 1: no line end in the first {len(buf):,} bytes"
                    )
                rest = buf
                continue
            header = buf[:end]
            if header.endswith(b"\r"):
                header = header[:-1]
                conv.sep = b"\r\n"
            conv.header(header)
            header_seen = True
            buf = buf[end + 1 :]
        last = buf.rfind(conv.sep)
        if last < 0:
            rest = buf
            continue
        end = last + len(conv.sep)
        rest = buf[end:]
        yield conv.convert_block(buf, 0, end)
    if not header_seen:
        if not rest.strip():
            raise ReadError(f"{conv.name}: the file is empty")
        conv.header(rest.rstrip(b"\r"))
        raise ReadError(f"{conv.name}: the file has a header but no rows")
    if rest.strip(b"\r\n"):
        yield conv.convert([rest.rstrip(b"\r")])
    if conv.rows == 0:
        raise ReadError(f"{conv.name}: the file has a header but no rows")


def read_to(
    source: str, taxi: str, name: str, out: BinaryIO | None, expect_gzip: bool | None = None
) -> dict[str, int]:
    """Read ``source`` and write its COPY rows to ``out`` (None: only count)."""
    if expect_gzip is None:
        expect_gzip = source.split("?", 1)[0].endswith(".gz")
    conv = RowConverter(taxi, name)
    raw_bytes = 0

    def counted() -> Iterator[bytes]:
        nonlocal raw_bytes
        for chunk in source_chunks(source):
            raw_bytes += len(chunk)
            yield chunk

    for block in convert_stream(decompressed(counted(), name, expect_gzip), conv):
        if out is not None and block:
            out.write(block)
    if out is not None:
        out.flush()
    return {"rows": conv.rows, "duplicates": conv.duplicates(), "bytes": raw_bytes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowhawk.taxi.reader")
    parser.add_argument("source", help="http(s) URL or local path")
    parser.add_argument("--taxi", required=True, choices=["green", "yellow"])
    parser.add_argument("--name", help="the file's name in messages")
    parser.add_argument("--count-only", action="store_true")
    parser.add_argument("--gzip", choices=["auto", "yes", "no"], default="auto")
    args = parser.parse_args(argv)
    name = args.name or os.path.basename(args.source.split("?", 1)[0])
    expect = {"auto": None, "yes": True, "no": False}[args.gzip]
    out = None if args.count_only else sys.stdout.buffer
    try:
        summary = read_to(args.source, args.taxi, name, out, expect)
    except ReadError as exc:
        print(json.dumps({"error": str(exc)}), file=sys.stderr, flush=True)
        return 2
    except BrokenPipeError:
        print(json.dumps({"error": "the loader stopped reading"}), file=sys.stderr, flush=True)
        return 3
    print(json.dumps(summary), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
