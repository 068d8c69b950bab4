"""flowhawk.taxi.Load: ids equal to the course's formula, atomic idempotent publishing,
parallel months, both table kinds, every bad input, and the real green file.

Everything runs for real: PostgreSQL, the reader subprocess, a local HTTP server.
"""

from __future__ import annotations

import gzip
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SHARED_DATA, jdbc_of
from flowhawk.errors import TaskError
from flowhawk.taxi.layout import layout_for
from flowhawk.taxi.load import TableName, abandoned_stages
from flowhawk.taxi.pgtext import float8_text, number_text, timestamp_text
from flowhawk.taxi.tasks import Load
from flowhawk.taxi.verify import verify_months
from taxi_helpers import make_month, serve_taxi_files, taxi_url_path

FLOW_FILE = Path(__file__).resolve().parents[1] / "flows" / "taxi_fast.yaml"
REAL_FILE = SHARED_DATA / "green_tripdata_2020-10.csv.gz"


# -- helpers -----------------------------------------------------------------------------
def load_task(url: str, **props: Any) -> Load:
    return Load.model_validate(
        {"id": "load", "type": "flowhawk.taxi.Load", **jdbc_of(url), **props}
    )


def run_load(make_ctx: Any, url: str, **props: Any) -> dict[str, Any]:
    return load_task(url, **props).run(make_ctx(task_id="load"))


def month_rows(url: str, table: str = "public.green_tripdata") -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute(f"SELECT filename, count(*) FROM {table} GROUP BY 1").fetchall())


def table_digest(url: str, table: str) -> tuple[int, str]:
    """Row count and an order-independent digest of every column of every row."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            f"SELECT count(*), md5(string_agg(md5(t::text), '' ORDER BY md5(t::text))) FROM {table} t"
        ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def stray_tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT relname FROM pg_class WHERE relname LIKE '%\\_stg\\_%' AND relkind = 'r'"
        ).fetchall()
    return [r[0] for r in rows]


def course_load(url: str, taxi: str, csv_gz: Path, table: str, filename: str) -> None:
    """The course's method: COPY into a staging table, UPDATE the md5 id, MERGE into ``table``."""
    layout = layout_for(taxi)
    stage = f"{table}_course_staging"
    with psycopg.connect(url) as conn:
        conn.execute(layout.create_table_sql(table))
        conn.execute(layout.create_table_sql(stage))
        conn.execute(f"TRUNCATE {stage}")
        with conn.cursor().copy(layout.copy_sql(stage)) as copy, gzip.open(csv_gz) as src:
            while block := src.read(1 << 20):
                copy.write(block)
        conn.execute(
            f"UPDATE {stage} SET unique_row_id = {layout.unique_id_sql()}, filename = %s",
            (filename,),
        )
        conn.execute(layout.merge_sql(table, stage))


# -- PostgreSQL's text of the key values ------------------------------------------------
@pytest.fixture(scope="module")
def pg_conn(pg_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        yield conn


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True, width=64))
def test_float8_text_is_postgres_text(pg_conn: psycopg.Connection, value: float) -> None:
    row = pg_conn.execute("SELECT %s::float8::text", (value,)).fetchone()
    assert row is not None
    assert float8_text(value) == row[0]


@pytest.mark.parametrize(
    "raw",
    [".79", "4.40", "0", "-2.5", "12", "12.0", "1e20", "1E-7", "+3.25", "007.50", "123456789012345678",
     "0.00001", " 7.5 ", "NaN", "-Infinity", "inf", "1.", "-0"],
)  # fmt: skip
def test_number_text_matches_postgres(pg_conn: psycopg.Connection, raw: str) -> None:
    row = pg_conn.execute("SELECT %s::float8::text", (raw,)).fetchone()
    assert row is not None
    assert number_text(raw.encode()) == row[0].encode()


@pytest.mark.parametrize("raw", ["1_0", "0x10", "abc", "1.2.3", "", "- 1", "1e"])
def test_number_text_refuses_what_it_cannot_reproduce(raw: str) -> None:
    assert number_text(raw.encode()) is None


def test_timestamp_text(pg_conn: psycopg.Connection) -> None:
    for raw in [
        "2019-01-01 00:00:00",
        "2020-10-31 23:59:59",
        "2019-01-01 10:00:00.500",
        "2019-01-01 10:00:00.000",
    ]:
        row = pg_conn.execute("SELECT %s::timestamp::text", (raw,)).fetchone()
        assert row is not None
        assert timestamp_text(raw.encode()) == row[0].encode()
    for raw in [
        "2019-01-01T00:00:00",
        "01/02/2019 00:00:00",
        "2019-01-01 24:00:00",
        "2019-01-01 00:00:60",
        "2019-1-1 0:00:00",
    ]:
        assert timestamp_text(raw.encode()) is None


# -- loading -----------------------------------------------------------------------------
def test_load_matches_the_course_method_row_for_row(
    tmp_path: Path, fresh_pg_url: str, make_ctx: Any, httpserver: Any
) -> None:
    gz = make_month(tmp_path, "yellow", 2019, 3, rows=3000)
    base = serve_taxi_files(httpserver, {taxi_url_path("yellow", 2019, 3): gz})
    out = run_load(make_ctx, fresh_pg_url, taxi="yellow", uri=f"{base}/yellow/{gz.name}")
    assert out["rowCount"] == out["sourceRows"] == 3000
    assert out["filename"] == "yellow_tripdata_2019-03.csv"
    assert out["duplicates"] == 0 and out["mode"] == "partitioned" and out["seconds"] > 0
    course_load(fresh_pg_url, "yellow", gz, "public.course_yellow", out["filename"])
    assert table_digest(fresh_pg_url, "public.yellow_tripdata") == table_digest(
        fresh_pg_url, "public.course_yellow"
    )
    assert stray_tables(fresh_pg_url) == []


def test_reload_is_idempotent_and_course_merge_adds_nothing(
    tmp_path: Path, fresh_pg_url: str, make_ctx: Any
) -> None:
    gz = make_month(tmp_path, "green", 2019, 1, rows=2000)
    ctx = make_ctx(task_id="load")
    stored = ctx.put_file(gz)
    first = run_load(
        make_ctx, fresh_pg_url, taxi="green", uri=stored, filename="green_tripdata_2019-01.csv"
    )
    before = table_digest(fresh_pg_url, "public.green_tripdata")
    second = run_load(
        make_ctx, fresh_pg_url, taxi="green", uri=stored, filename="green_tripdata_2019-01.csv"
    )
    assert second["replaced"] and not first["replaced"]
    assert table_digest(fresh_pg_url, "public.green_tripdata") == before
    # the course's flow on the same month: its MERGE finds every id and inserts nothing
    course_load(fresh_pg_url, "green", gz, "public.green_tripdata", "green_tripdata_2019-01.csv")
    assert table_digest(fresh_pg_url, "public.green_tripdata") == before
    # the course's flow on a new month lands in the DEFAULT partition; our load moves it
    gz2 = make_month(tmp_path, "green", 2019, 2, rows=1500)
    course_load(fresh_pg_url, "green", gz2, "public.green_tripdata", "green_tripdata_2019-02.csv")
    assert month_rows(fresh_pg_url, "public.green_tripdata_default") == {
        "green_tripdata_2019-02.csv": 1500
    }
    with_course = table_digest(fresh_pg_url, "public.green_tripdata")
    out = run_load(
        make_ctx,
        fresh_pg_url,
        taxi="green",
        uri=ctx.put_file(gz2),
        filename="green_tripdata_2019-02.csv",
    )
    assert out["replaced"]
    assert month_rows(fresh_pg_url, "public.green_tripdata_default") == {}
    assert month_rows(fresh_pg_url, "public.green_tripdata_2019_02") == {
        "green_tripdata_2019-02.csv": 1500
    }
    assert table_digest(fresh_pg_url, "public.green_tripdata") == with_course


def test_plain_table_created_by_the_course(
    tmp_path: Path, fresh_pg_url: str, make_ctx: Any
) -> None:
    gz = make_month(tmp_path, "green", 2019, 4, rows=1200)
    course_load(fresh_pg_url, "green", gz, "public.green_tripdata", "green_tripdata_2019-04.csv")
    course = table_digest(fresh_pg_url, "public.green_tripdata")
    ctx = make_ctx()
    uri = ctx.put_file(gz)
    for _ in range(2):
        out = run_load(
            make_ctx, fresh_pg_url, taxi="green", uri=uri, filename="green_tripdata_2019-04.csv"
        )
        assert out["mode"] == "plain" and out["replaced"] and out["rowCount"] == 1200
        assert table_digest(fresh_pg_url, "public.green_tripdata") == course
    with psycopg.connect(fresh_pg_url) as conn:
        temp = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname LIKE '%\\_stg\\_%'"
        ).fetchone()
    assert temp == (0,)


def test_in_file_duplicates_are_kept_like_the_course(
    tmp_path: Path, fresh_pg_url: str, make_ctx: Any
) -> None:
    gz = make_month(tmp_path, "green", 2019, 5, rows=500)
    lines = gzip.decompress(gz.read_bytes()).split(b"\r\n")
    doubled = tmp_path / "dup" / gz.name
    doubled.parent.mkdir()
    doubled.write_bytes(gzip.compress(b"\r\n".join(lines[:10] + [lines[5], lines[7]] + lines[10:])))
    ctx = make_ctx()
    out = run_load(
        make_ctx, fresh_pg_url, taxi="green", uri=ctx.put_file(doubled), filename="m.csv"
    )
    assert (out["sourceRows"], out["rowCount"], out["duplicates"]) == (502, 502, 2)
    course_load(fresh_pg_url, "green", doubled, "public.course_green", "m.csv")
    assert table_digest(fresh_pg_url, "public.green_tripdata") == table_digest(
        fresh_pg_url, "public.course_green"
    )


def test_twelve_months_in_parallel_equal_twelve_in_a_row(
    tmp_path: Path, fresh_pg_url: str, make_ctx: Any, httpserver: Any
) -> None:
    months = [(2019, m) for m in range(1, 13)]
    files = {
        taxi_url_path("green", y, m): make_month(tmp_path, "green", y, m, rows=800)
        for y, m in months
    }
    base = serve_taxi_files(httpserver, files)
    with psycopg.connect(fresh_pg_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA par; CREATE SCHEMA seq")

    def one(schema: str, path: str) -> dict[str, Any]:
        return run_load(
            make_ctx, fresh_pg_url, taxi="green", uri=base + path, table=f"{schema}.green_tripdata"
        )

    for path in files:
        one("seq", path)
    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda p: one("par", p), files))
    assert sum(r["rowCount"] for r in results) == 12 * 800
    assert table_digest(fresh_pg_url, "par.green_tripdata") == table_digest(
        fresh_pg_url, "seq.green_tripdata"
    )
    assert len(month_rows(fresh_pg_url, "par.green_tripdata")) == 12
    # and again, in parallel over the loaded months: same table
    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(lambda p: one("par", p), files))
    assert table_digest(fresh_pg_url, "par.green_tripdata") == table_digest(
        fresh_pg_url, "seq.green_tripdata"
    )
    assert stray_tables(fresh_pg_url) == []


# -- bad input ---------------------------------------------------------------------------
def _serve_bytes(
    httpserver: Any, path: str, body: bytes, content_type: str = "application/octet-stream"
) -> str:
    httpserver.expect_request(path).respond_with_data(body, content_type=content_type)
    return httpserver.url_for(path)


def _dropping_server(body: bytes) -> tuple[str, threading.Thread]:
    """A raw HTTP server that announces ``body`` but closes after sending half of it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)

    def serve() -> None:
        conn, _ = sock.accept()
        with conn:
            conn.recv(65536)
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nContent-Type: application/gzip\r\n\r\n"
            conn.sendall(head.encode() + body[: len(body) // 2])
        sock.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}/green/green_tripdata_2019-01.csv.gz", thread


def _edit_csv(gz: Path, edit: Any) -> bytes:
    lines = gzip.decompress(gz.read_bytes()).split(b"\r\n")
    edit(lines)
    return gzip.compress(b"\r\n".join(lines))


def _set_field(lines: list[bytes], line_no: int, column: int, value: bytes) -> None:
    fields = lines[line_no - 1].split(b",")
    fields[column] = value
    lines[line_no - 1] = b",".join(fields)


BAD_INPUTS: dict[str, tuple[Any, str]] = {
    "truncated gzip": (lambda gz: gz.read_bytes()[: gz.stat().st_size // 2], "truncated gzip file"),
    "html page": (
        lambda gz: b"<!DOCTYPE html><html><body>Rate limit exceeded</body></html>",
        "expected gzip data but got an HTML page",
    ),
    "header mismatch": (
        lambda gz: _edit_csv(
            gz, lambda ls: ls.__setitem__(0, ls[0].replace(b"fare_amount", b"fare"))
        ),
        "line 1: the header does not match the green layout (missing fare_amount; unexpected 'fare')",
    ),
    "extra column": (
        lambda gz: _edit_csv(gz, lambda ls: ls.__setitem__(40, ls[39] + b",7")),
        "line 41: expected 20 columns, found 21 (extra columns)",
    ),
    "missing column": (
        lambda gz: _edit_csv(gz, lambda ls: ls.__setitem__(41, ls[41].rsplit(b",", 1)[0])),
        "line 42: expected 20 columns, found 19 (missing columns)",
    ),
    "bad timestamp": (
        lambda gz: _edit_csv(gz, lambda ls: _set_field(ls, 17, 1, b"2019-13-45 99:00:00")),
        "line 17, column lpep_pickup_datetime: unparsable timestamp '2019-13-45 99:00:00'",
    ),
    "impossible date": (
        lambda gz: _edit_csv(gz, lambda ls: _set_field(ls, 23, 2, b"2019-02-30 10:00:00")),
        'line 23, column lpep_dropoff_datetime: date/time field value out of range: "2019-02-30 10:00:00"',
    ),
    "bad key number": (
        lambda gz: _edit_csv(gz, lambda ls: _set_field(ls, 30, 9, b"12,5".replace(b",", b";"))),
        "line 30, column fare_amount: unparsable number '12;5'",
    ),
    "bad other number": (
        lambda gz: _edit_csv(gz, lambda ls: _set_field(ls, 31, 12, b"abc")),
        'line 31, column tip_amount: invalid input syntax for type double precision: "abc"',
    ),
    "bad integer": (
        lambda gz: _edit_csv(gz, lambda ls: _set_field(ls, 35, 17, b"1.5")),
        'line 35, column payment_type: invalid input syntax for type integer: "1.5"',
    ),
    "empty file": (lambda gz: b"", "the file is empty"),
    "header only": (
        lambda gz: gzip.compress(gzip.decompress(gz.read_bytes()).split(b"\r\n")[0] + b"\r\n"),
        "the file has a header but no rows",
    ),
}


@pytest.fixture
def loaded_month(
    tmp_path: Path, fresh_pg_url: str, make_ctx: Any, httpserver: Any
) -> dict[str, Any]:
    """A database holding January (loaded by us); the test then fails to reload January."""
    gz = make_month(tmp_path, "green", 2019, 1, rows=300)
    base = serve_taxi_files(httpserver, {"/good/" + gz.name: gz})
    run_load(make_ctx, fresh_pg_url, taxi="green", uri=f"{base}/good/{gz.name}")
    with psycopg.connect(fresh_pg_url) as conn:
        record = conn.execute("SELECT * FROM flowhawk_taxi_loads").fetchall()
    return {
        "gz": gz,
        "digest": table_digest(fresh_pg_url, "public.green_tripdata"),
        "record": record,
    }


def assert_unchanged(url: str, before: dict[str, Any]) -> None:
    assert table_digest(url, "public.green_tripdata") == before["digest"]
    assert stray_tables(url) == []
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT * FROM flowhawk_taxi_loads").fetchall() == before["record"]


@pytest.mark.parametrize("streams", [1, 2])
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_cleanly(
    case: str,
    streams: int,
    loaded_month: dict[str, Any],
    fresh_pg_url: str,
    make_ctx: Any,
    httpserver: Any,
) -> None:
    make_body, message = BAD_INPUTS[case]
    url = _serve_bytes(
        httpserver, "/bad/green_tripdata_2019-01.csv.gz", make_body(loaded_month["gz"])
    )
    with pytest.raises(TaskError) as err:
        run_load(make_ctx, fresh_pg_url, taxi="green", uri=url, streams=streams)
    assert f"green_tripdata_2019-01.csv: {message}" in str(err.value) or message in str(err.value)
    assert "green_tripdata_2019-01.csv" in str(err.value)
    assert_unchanged(fresh_pg_url, loaded_month)


@pytest.mark.parametrize("streams", [1, 3])
def test_postgres_errors_name_the_file_line_whatever_the_stream(
    streams: int, tmp_path: Path, fresh_pg_url: str, make_ctx: Any, httpserver: Any
) -> None:
    """A value only PostgreSQL rejects, deep in a file big enough to be split over several
    COPY streams: the message still names the file's line (a stream counts only its own)."""
    gz = make_month(tmp_path, "green", 2019, 2, rows=40_000)
    body = _edit_csv(gz, lambda ls: _set_field(ls, 38_517, 17, b"x7"))
    url = _serve_bytes(httpserver, "/deep/green_tripdata_2019-02.csv.gz", body)
    with pytest.raises(TaskError) as err:
        run_load(make_ctx, fresh_pg_url, taxi="green", uri=url, streams=streams)
    assert (
        'green_tripdata_2019-02.csv: line 38517, column payment_type: invalid input syntax for type integer: "x7"'
        in str(err.value)
    )
    assert stray_tables(fresh_pg_url) == []
    with psycopg.connect(fresh_pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM green_tripdata").fetchone() == (0,)


def test_stages_of_dead_loads_are_reported_and_dropped_running_ones_left(
    tmp_path: Path, fresh_pg_url: str, make_ctx: Any, httpserver: Any
) -> None:
    gz = make_month(tmp_path, "green", 2019, 1, rows=200)
    base = serve_taxi_files(httpserver, {"/g/" + gz.name: gz})
    run_load(make_ctx, fresh_pg_url, taxi="green", uri=f"{base}/g/{gz.name}")
    target = TableName.parse("public.green_tripdata")
    with (
        psycopg.connect(fresh_pg_url, autocommit=True) as conn,
        psycopg.connect(fresh_pg_url, autocommit=True) as owner,
    ):
        conn.execute("CREATE TABLE green_tripdata_stg_dead_000001 (x int)")
        conn.execute("CREATE TABLE green_tripdata_stg_live_000002 (x int)")
        # a running load holds the lock named after its staging table
        owner.execute(
            "SELECT pg_advisory_lock(hashtextextended(%s, 0))",
            ("flowhawk.taxi.stage:public.green_tripdata_stg_live_000002",),
        )
        assert abandoned_stages(conn, target) == ["public.green_tripdata_stg_dead_000001"]
        report = verify_months(conn, "green", [(2019, 1)])
        assert report.leftover_staging == ["public.green_tripdata_stg_dead_000001"]
        assert not report.ok
        run_load(make_ctx, fresh_pg_url, taxi="green", uri=f"{base}/g/{gz.name}")
        assert sorted(stray_tables(fresh_pg_url)) == ["green_tripdata_stg_live_000002"]
        assert verify_months(conn, "green", [(2019, 1)]).ok


def test_connection_dropped_mid_stream(
    loaded_month: dict[str, Any], fresh_pg_url: str, make_ctx: Any
) -> None:
    url, thread = _dropping_server(loaded_month["gz"].read_bytes())
    with pytest.raises(TaskError) as err:
        run_load(make_ctx, fresh_pg_url, taxi="green", uri=url)
    thread.join(5)
    assert "download of" in str(err.value) and "failed after" in str(err.value)
    assert "peer closed connection" in str(err.value) or "incomplete" in str(err.value).lower()
    assert_unchanged(fresh_pg_url, loaded_month)


def test_streams_property(
    tmp_path: Path, fresh_pg_url: str, make_ctx: Any, httpserver: Any
) -> None:
    gz = make_month(tmp_path, "green", 2019, 6, rows=120)
    base = serve_taxi_files(httpserver, {"/s/" + gz.name: gz})
    for streams in (1, "{{ 1 + 2 }}"):
        out = run_load(
            make_ctx, fresh_pg_url, taxi="green", uri=f"{base}/s/{gz.name}", streams=streams
        )
        assert out["rowCount"] == 120
    for bad in (0, 17, "many"):
        with pytest.raises(TaskError, match="property `streams`"):
            run_load(make_ctx, fresh_pg_url, taxi="green", uri=f"{base}/s/{gz.name}", streams=bad)
    assert month_rows(fresh_pg_url) == {"green_tripdata_2019-06.csv": 120}


def test_release_redirect_is_followed(
    tmp_path: Path, fresh_pg_url: str, make_ctx: Any, httpserver: Any
) -> None:
    """The course's release URLs answer with a redirect to a CDN, as GitHub's do."""
    from werkzeug import Response

    gz = make_month(tmp_path, "green", 2019, 5, rows=150)
    base = serve_taxi_files(httpserver, {"/cdn/" + gz.name: gz})
    httpserver.expect_request("/releases/" + gz.name).respond_with_response(
        Response(status=302, headers={"Location": f"{base}/cdn/{gz.name}"})
    )
    out = run_load(make_ctx, fresh_pg_url, taxi="green", uri=f"{base}/releases/{gz.name}")
    assert out["rowCount"] == 150 and out["filename"] == "green_tripdata_2019-05.csv"


def test_http_404_and_bad_properties(fresh_pg_url: str, make_ctx: Any, httpserver: Any) -> None:
    httpserver.no_handler_status_code = 404
    with pytest.raises(TaskError, match="HTTP 404"):
        run_load(make_ctx, fresh_pg_url, taxi="green", uri=httpserver.url_for("/nope.csv.gz"))
    with pytest.raises(TaskError, match="property `taxi`"):
        run_load(make_ctx, fresh_pg_url, taxi="{{ 'purple' }}", uri="http://x/y.csv.gz")
    with pytest.raises(TaskError, match="property `uri`"):
        run_load(make_ctx, fresh_pg_url, taxi="green", uri="/etc/passwd")
    with pytest.raises(ValueError, match="taxi must be one of"):
        load_task(fresh_pg_url, taxi="purple", uri="http://x/y.csv.gz")


def test_plain_csv_source(tmp_path: Path, fresh_pg_url: str, make_ctx: Any) -> None:
    csv = make_month(tmp_path, "yellow", 2020, 2, rows=700, gzip=False)
    ctx = make_ctx()
    out = run_load(make_ctx, fresh_pg_url, taxi="yellow", uri=ctx.put_file(csv), filename=csv.name)
    assert out["rowCount"] == 700 and out["filename"] == "yellow_tripdata_2020-02.csv"


# -- through a flow run ------------------------------------------------------------------
def _engine(url: str, home: Path) -> Any:
    from flowhawk.config import Settings
    from flowhawk.engine.service import Engine

    os.environ["FLOWHAWK_HOME"] = str(home)
    defaults = [{"type": "io.kestra.plugin.jdbc.postgresql", "values": jdbc_of(url)}]
    return Engine(
        Settings(database_url=url, storage_path=home / "storage", plugin_defaults=defaults)
    )


def run_taxi_flow(
    url: str, home: Path, base: str, year: int, month: int, taxi: str = "green"
) -> Any:
    from engine_helpers import collect

    engine = _engine(url, home)
    try:
        flow, revision, _ = engine.deploy_source(FLOW_FILE.read_text(), str(FLOW_FILE))
        started = engine.create_execution(
            flow,
            revision,
            inputs={"taxi": taxi, "base_url": base},
            trigger_date=datetime(year, month, 1, 9, tzinfo=UTC),
        )
        engine.run_to_end(started)
        return collect(engine, started.execution.id)
    finally:
        engine.close()


def test_flow_loads_and_verifies_a_month(
    tmp_path: Path, fresh_pg_url: str, httpserver: Any
) -> None:
    gz = make_month(tmp_path, "green", 2019, 6, rows=900)
    bad = _edit_csv(gz, lambda ls: _set_field(ls, 12, 1, b"yesterday"))
    base = serve_taxi_files(httpserver, {taxi_url_path("green", 2019, 6): gz})
    httpserver.expect_request(taxi_url_path("green", 2019, 7)).respond_with_data(bad)
    result = run_taxi_flow(fresh_pg_url, tmp_path / "home", base, 2019, 6)
    assert result.state == "SUCCESS", result.log_text()
    assert result.outputs("load")["rowCount"] == 900
    assert result.outputs("verify")["ok"] is True
    before = table_digest(fresh_pg_url, "public.green_tripdata")
    failed = run_taxi_flow(fresh_pg_url, tmp_path / "home", base, 2019, 7)
    assert failed.state == "FAILED"
    assert (
        "green_tripdata_2019-07.csv: line 12, column lpep_pickup_datetime: unparsable timestamp 'yesterday'"
        in failed.log_text()
    )
    assert table_digest(fresh_pg_url, "public.green_tripdata") == before
    assert stray_tables(fresh_pg_url) == []


# -- the real file -----------------------------------------------------------------------
@pytest.mark.skipif(not REAL_FILE.exists(), reason="the real green 2020-10 file is not here")
def test_real_green_file(fresh_pg_url: str, make_ctx: Any, httpserver: Any, tmp_path: Path) -> None:
    from flowhawk.taxi.verify import verify_months

    base = serve_taxi_files(httpserver, {"/green/green_tripdata_2020-10.csv.gz": REAL_FILE})
    result = run_taxi_flow(fresh_pg_url, tmp_path / "home", base, 2020, 10)
    assert result.state == "SUCCESS", result.log_text()
    assert result.outputs("verify")["ok"] is True
    out = result.outputs("load")
    assert (out["rowCount"], out["sourceRows"], out["duplicates"]) == (95120, 95120, 0)
    with psycopg.connect(fresh_pg_url) as conn:
        stats = conn.execute(
            "SELECT count(*), count(DISTINCT unique_row_id), count(*) FILTER (WHERE vendorid IS NULL)"
            " FROM green_tripdata WHERE filename = 'green_tripdata_2020-10.csv'"
        ).fetchone()
    assert stats == (95120, 95120, 42510)
    course_load(
        fresh_pg_url, "green", REAL_FILE, "public.course_green", "green_tripdata_2020-10.csv"
    )
    with psycopg.connect(fresh_pg_url) as conn:
        unmatched = conn.execute(
            "SELECT count(*) FROM green_tripdata o FULL JOIN course_green c USING (unique_row_id)"
            " WHERE o.unique_row_id IS NULL OR c.unique_row_id IS NULL"
        ).fetchone()
    assert unmatched == (0,)
    assert table_digest(fresh_pg_url, "public.green_tripdata") == table_digest(
        fresh_pg_url, "public.course_green"
    )
    report = verify_months(fresh_pg_url, "green", [(2020, 10)])
    assert report.ok, report.problems()
    before = table_digest(fresh_pg_url, "public.green_tripdata")
    again = run_load(
        make_ctx, fresh_pg_url, taxi="green", uri=f"{base}/green/green_tripdata_2020-10.csv.gz"
    )
    assert again["replaced"] and again["rowCount"] == 95120
    assert table_digest(fresh_pg_url, "public.green_tripdata") == before


def test_kill_while_the_server_stalls(
    loaded_month: dict[str, Any], fresh_pg_url: str, make_ctx: Any
) -> None:
    """A kill stops the load even while the download waits; nothing is published."""
    from flowhawk.errors import TaskKilled

    body = loaded_month["gz"].read_bytes()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    release = threading.Event()

    def stall() -> None:
        conn, _ = sock.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(
                f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:1000]
            )
            release.wait(20)
        sock.close()

    threading.Thread(target=stall, daemon=True).start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/green/green_tripdata_2019-01.csv.gz"
    ctx = make_ctx(task_id="load")
    threading.Timer(1.0, ctx.cancel_event.set).start()
    started = time.monotonic()
    try:
        with pytest.raises(TaskKilled):
            load_task(fresh_pg_url, taxi="green", uri=url).run(ctx)
    finally:
        release.set()
    assert time.monotonic() - started < 6
    assert_unchanged(fresh_pg_url, loaded_month)


def test_unusual_but_valid_values_give_the_course_ids(
    tmp_path: Path, fresh_pg_url: str, make_ctx: Any
) -> None:
    """Quoted fields, fractional seconds, empty timestamps and odd number spellings: the
    stored rows and ids are the ones the course's COPY + UPDATE + MERGE give."""
    gz = make_month(tmp_path, "green", 2019, 8, rows=200)

    def edit(lines: list[bytes]) -> None:
        _set_field(lines, 2, 0, b'"2"')
        _set_field(lines, 3, 1, b"2019-08-01 10:00:00.500")
        _set_field(lines, 4, 2, b"2019-08-01 10:00:00.000000")
        _set_field(lines, 5, 1, b"")
        _set_field(lines, 6, 9, b"5.0")
        _set_field(lines, 7, 9, b"1e1")
        _set_field(lines, 8, 8, b" 7.25")
        _set_field(lines, 9, 8, b"")
        _set_field(lines, 10, 9, b"-0")
        _set_field(lines, 11, 3, b'"N"')

    odd = tmp_path / "odd" / gz.name
    odd.parent.mkdir()
    odd.write_bytes(_edit_csv(gz, edit))
    ctx = make_ctx()
    out = run_load(make_ctx, fresh_pg_url, taxi="green", uri=ctx.put_file(odd), filename="m.csv")
    assert out["rowCount"] == 200
    course_load(fresh_pg_url, "green", odd, "public.course_green", "m.csv")
    assert table_digest(fresh_pg_url, "public.green_tripdata") == table_digest(
        fresh_pg_url, "public.course_green"
    )


def test_every_bad_input_fails_the_flow(
    loaded_month: dict[str, Any], fresh_pg_url: str, httpserver: Any, tmp_path: Path
) -> None:
    """Each bad input through a real flow run: FAILED, the message in the logs, nothing
    published, no staging table, the main table and the loads record unchanged."""
    from engine_helpers import collect
    from flowhawk.engine.service import Engine

    cases = sorted(BAD_INPUTS)
    for i, case in enumerate(cases):
        make_body, _ = BAD_INPUTS[case]
        path = taxi_url_path("green", 2030 + i, 1)
        httpserver.expect_request(path).respond_with_data(make_body(loaded_month["gz"]))
    engine: Engine = _engine(fresh_pg_url, tmp_path / "home")
    try:
        flow, revision, _ = engine.deploy_source(FLOW_FILE.read_text(), str(FLOW_FILE))

        def run(base: str, year: int) -> Any:
            started = engine.create_execution(
                flow,
                revision,
                inputs={"taxi": "green", "base_url": base},
                trigger_date=datetime(year, 1, 1, 9, tzinfo=UTC),
            )
            engine.run_to_end(started)
            return collect(engine, started.execution.id)

        base = httpserver.url_for("").rstrip("/")
        for i, case in enumerate(cases):
            result = run(base, 2030 + i)
            assert result.state == "FAILED", case
            assert BAD_INPUTS[case][1] in result.log_text(), (case, result.log_text())
            assert f"green_tripdata_{2030 + i}-01.csv" in result.log_text()
            assert "verify" not in result.runs
            assert_unchanged(fresh_pg_url, loaded_month)
        url, thread = _dropping_server(loaded_month["gz"].read_bytes())
        dropped = run(url.rsplit("/green/", 1)[0], 2019)
        thread.join(5)
        assert dropped.state == "FAILED"
        assert "failed after" in dropped.log_text()
        assert_unchanged(fresh_pg_url, loaded_month)
    finally:
        engine.close()
