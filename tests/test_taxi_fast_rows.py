"""The C row loop (``flowhawk.taxi._rows``) against the pure-Python loop it speeds up.

The Python loop is the reference (its ids are checked against PostgreSQL's own md5 in
test_taxi_load.py); here both must give byte-identical COPY rows, the same counts and the
same errors on any input, including rows the C loop hands back to Python.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowhawk.taxi import reader
from flowhawk.taxi.layout import layout_for
from flowhawk.taxi.synth import write_month

pytestmark = pytest.mark.skipif(
    reader._fast_rows is None, reason="the C row loop is not built (no C compiler?)"
)

GREEN = layout_for("green")
HEADER = ",".join(GREEN.csv_columns).encode()


def _convert(data: bytes, fast: bool) -> tuple[bytes, int, int]:
    old = os.environ.get("FLOWHAWK_TAXI_PURE_PYTHON")
    os.environ["FLOWHAWK_TAXI_PURE_PYTHON"] = "0" if fast else "1"
    try:
        return _convert_now(data)
    finally:
        if old is None:
            del os.environ["FLOWHAWK_TAXI_PURE_PYTHON"]
        else:
            os.environ["FLOWHAWK_TAXI_PURE_PYTHON"] = old


def _convert_now(data: bytes) -> tuple[bytes, int, int]:
    conv = reader.RowConverter("green", "t.csv")
    out = b"".join(
        reader.convert_stream(iter([data[i : i + 997] for i in range(0, len(data), 997)]), conv)
    )
    return out, conv.rows, conv.duplicates()


def _row(fields: dict[str, str]) -> str:
    base = dict.fromkeys(GREEN.csv_columns, "")
    base.update(fields)
    return ",".join(base[c] for c in GREEN.csv_columns)


numbers = st.one_of(
    st.sampled_from(["", "0", "-0", "0.00", ".79", "4.40", "12", "-3.5", "1e3", "1E-2", " 7.5",
                     "+2", "0.0001", "0.00001", "123456789012345", "1234567890123456",
                     "99999999999999.9", "1.000000000000001", "007.10", "-.0", "5.", ".", "-",
                     "nan", "Infinity", "1.5.2", "12a"]),
    st.decimals(allow_nan=False, allow_infinity=False, places=3).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=64).map(repr),
)  # fmt: skip
stamps = st.sampled_from(
    ["", "2019-01-05 13:04:59", "2019-12-31 23:59:59", "2019-01-05 13:04:59.250",
     "2019-02-30 10:00:00", "2019-13-01 00:00:00", "2019-01-01 24:00:00", "2019-01-01 10:60:00",
     "2019-1-01 10:00:00", "2019-01-01T10:00:00", "garbage"]
)  # fmt: skip
rows = st.builds(
    lambda v, p, d, pu, do, fare, dist, flag: _row(
        {"VendorID": v, "lpep_pickup_datetime": p, "lpep_dropoff_datetime": d,
         "PULocationID": pu, "DOLocationID": do, "fare_amount": fare, "trip_distance": dist,
         "store_and_fwd_flag": flag}
    ),
    st.sampled_from(["", "1", "2"]), stamps, stamps, st.sampled_from(["", "7", "264"]),
    st.sampled_from(["", "1", "95"]), numbers, numbers, st.sampled_from(["N", "Y", '"N"', ""]),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(rows, min_size=1, max_size=30), st.booleans())
def test_same_rows_as_python(lines: list[str], crlf: bool) -> None:
    sep = "\r\n" if crlf else "\n"
    data = (sep.join([HEADER.decode(), *lines]) + sep).encode()
    results = []
    for fast in (True, False):
        try:
            results.append(("ok", _convert(data, fast)))
        except reader.ReadError as exc:
            results.append(("error", str(exc)))
    assert results[0] == results[1]


def test_a_synthetic_month_is_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "green_tripdata_2019-03.csv.gz"
    write_month(path, "green", 2019, 3, 20_000)
    data = gzip.decompress(path.read_bytes())
    fast, slow = _convert(data, True), _convert(data, False)
    assert fast == slow
    assert fast[1] == 20_000
    first = fast[0].split(b"\n", 1)[0]
    assert len(first.split(b",")[0]) == 32


def test_md5_of_every_message_length() -> None:
    """One row per id-key length 1..119 bytes (one and two MD5 blocks, the padding edges)."""
    buckets = [bytearray() for _ in range(256)]
    plan = reader.key_plan("green")
    keys = (plan.vendor, plan.pickup, plan.dropoff, plan.pu, plan.do, plan.fare, plan.distance)
    assert reader._fast_rows is not None
    for length in range(1, 120):
        vendor = "7" * length
        line = _row({"VendorID": vendor}).encode() + b"\n"
        out, pos, count = reader._fast_rows.convert(
            line, 0, len(line), len(GREEN.csv_columns), keys, False, buckets
        )
        assert (pos, count) == (len(line), 1)
        assert out[:32].decode() == hashlib.md5(vendor.encode()).hexdigest()


def test_duplicates_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    line = _row(
        {"VendorID": "2", "lpep_pickup_datetime": "2019-01-05 13:04:59", "fare_amount": "5"}
    )
    other = _row({"VendorID": "1", "fare_amount": "5.5"})
    data = "\n".join([HEADER.decode(), line, other, line, line, other]).encode() + b"\n"
    assert _convert(data, True)[1:] == (5, 3)
    assert _convert(data, False)[1:] == (5, 3)


def test_the_reader_uses_the_c_loop_unless_told_not_to(tmp_path: Path) -> None:
    path = tmp_path / "green_tripdata_2019-04.csv.gz"
    write_month(path, "green", 2019, 4, 5_000)
    outputs = []
    for pure in ("0", "1"):
        env = {**os.environ, "FLOWHAWK_TAXI_PURE_PYTHON": pure}
        run = subprocess.run(
            [sys.executable, "-m", "flowhawk.taxi.reader", str(path), "--taxi", "green"],
            capture_output=True, env=env, check=True,
        )  # fmt: skip
        outputs.append(run.stdout)
    assert outputs[0] == outputs[1]
    assert outputs[0].count(b"\n") == 5_000
