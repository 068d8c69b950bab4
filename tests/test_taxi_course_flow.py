"""The course's monthly taxi load (``flows/postgres_taxi.yaml``) end to end.

Gzipped CSVs in the real green and yellow layouts are served by a local HTTP server
(pytest-httpserver) through the flow's ``base_url`` input; PostgreSQL tasks without a
``url`` write into the state database, so each test's own database receives
``public.<taxi>_tripdata``. Loading a month twice must leave it once (MERGE), and a bad
download or file must fail the execution without leaving a partial month in the main table.
"""

from __future__ import annotations

import csv
import gzip
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cli_helpers import make_cli
from conftest import _with_db, create_database, drop_database
from engine_helpers import Result, collect, make_engine
from flowhawk.engine.service import Engine
from flowhawk.taxi.layout import layout_for
from taxi_helpers import make_month, serve_taxi_files, taxi_url_path

ROOT = Path(__file__).resolve().parents[1]
COURSE_FLOW = ROOT / "flows" / "postgres_taxi.yaml"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_GREEN = SHARED_DATA / "green_tripdata_2020-10.csv.gz"


def run_course_flow(engine: Engine, taxi: str, year: int, month: int, base_url: str) -> Result:
    flow, revision, _ = engine.deploy_file(COURSE_FLOW)
    started = engine.create_execution(
        flow,
        revision,
        inputs={
            "taxi": taxi,
            "year": str(year),
            "month": f"{month:02d}",
            "base_url": base_url,
        },
    )
    engine.run_to_end(started)
    return collect(engine, started.execution.id)


def table_stats(url: str, taxi: str, filename: str | None = None) -> dict[str, int]:
    """rows, distinct unique_row_id, rows without VendorID (of one file, or all)."""
    where = "WHERE filename = %s" if filename else ""
    with psycopg.connect(url) as conn:
        exists = conn.execute("SELECT to_regclass(%s)", (f"public.{taxi}_tripdata",)).fetchone()
        if not exists or exists[0] is None:
            return {"rows": 0, "ids": 0, "no_vendor": 0}
        row = conn.execute(
            "SELECT count(*), count(DISTINCT unique_row_id), count(*) FILTER (WHERE vendorid IS NULL)"
            f" FROM public.{taxi}_tripdata {where}",
            (filename,) if filename else (),
        ).fetchone()
    assert row is not None
    return {"rows": row[0], "ids": row[1], "no_vendor": row[2]}


def file_stats(path: Path) -> dict[str, int]:
    with gzip.open(path, "rt", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        vendor = header.index("VendorID")
        rows = list(reader)
    return {"rows": len(rows), "no_vendor": sum(1 for r in rows if not r[vendor])}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def engine(fresh_pg_url: str, home: Path) -> Iterator[Engine]:
    eng = make_engine(fresh_pg_url, home)
    yield eng
    eng.close()


# -- loads ------------------------------------------------------------------------------------


def test_green_month_loaded_twice_through_the_cli_stays_once(
    fresh_pg_url: str, tmp_path: Path, httpserver: HTTPServer
) -> None:
    jan = make_month(tmp_path / "files", "green", 2019, 1, rows=400)
    feb = make_month(tmp_path / "files", "green", 2019, 2, rows=300)
    base = serve_taxi_files(
        httpserver,
        {taxi_url_path("green", 2019, 1): jan, taxi_url_path("green", 2019, 2): feb},
    )
    cli = make_cli(fresh_pg_url, tmp_path / "home")
    expected = file_stats(jan)
    for _ in range(2):
        done = cli.run(
            "run", COURSE_FLOW, "-i", "taxi=green", "-i", "year=2019", "-i", "month=01",
            "-i", f"base_url={base}",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr
        assert done.stdout.rstrip().endswith("SUCCESS")
        stats = table_stats(fresh_pg_url, "green")
        assert stats == {"rows": 400, "ids": 400, "no_vendor": expected["no_vendor"]}
    execution = cli.show(done.stdout.split()[-2])
    assert execution["labels"]["file"] == "green_tripdata_2019-01.csv"
    assert execution["labels"]["taxi"] == "green"
    assert not list((tmp_path / "home" / "storage").rglob("*.csv*")), "purge_files left files"

    done = cli.run(
        "run", COURSE_FLOW, "-i", "taxi=green", "-i", "year=2019", "-i", "month=02",
        "-i", f"base_url={base}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert table_stats(fresh_pg_url, "green")["rows"] == 700
    assert table_stats(fresh_pg_url, "green", "green_tripdata_2019-02.csv")["ids"] == 300


def test_yellow_month_loaded_twice_stays_once(
    engine: Engine, fresh_pg_url: str, tmp_path: Path, httpserver: HTTPServer
) -> None:
    path = make_month(tmp_path, "yellow", 2020, 3, rows=500)
    base = serve_taxi_files(httpserver, {taxi_url_path("yellow", 2020, 3): path})
    expected = file_stats(path)
    for _ in range(2):
        result = run_course_flow(engine, "yellow", 2020, 3, base)
        assert result.state == "SUCCESS", result.log_text()[-3000:]
        assert "if_yellow_taxi/then/yellow_merge_data" in result.runs
        assert not any("/else/" in p for p in result.runs)
        stats = table_stats(fresh_pg_url, "yellow")
        assert stats == {"rows": 500, "ids": 500, "no_vendor": expected["no_vendor"]}
    assert table_stats(fresh_pg_url, "green")["rows"] == 0
    with psycopg.connect(fresh_pg_url) as conn:
        filenames = conn.execute("SELECT DISTINCT filename FROM public.yellow_tripdata").fetchall()
        assert filenames == [("yellow_tripdata_2020-03.csv",)]
        sample = conn.execute(
            "SELECT unique_row_id = md5(COALESCE(CAST(VendorID AS text), '')"
            " || COALESCE(CAST(tpep_pickup_datetime AS text), '')"
            " || COALESCE(CAST(tpep_dropoff_datetime AS text), '')"
            " || COALESCE(PULocationID, '') || COALESCE(DOLocationID, '')"
            " || COALESCE(CAST(fare_amount AS text), '') || COALESCE(CAST(trip_distance AS text), ''))"
            " FROM public.yellow_tripdata"
        ).fetchall()
        assert sample and all(ok for (ok,) in sample)


@pytest.mark.skipif(not REAL_GREEN.exists(), reason=f"{REAL_GREEN} not present")
def test_real_green_october_2020_loaded_twice(
    engine: Engine, fresh_pg_url: str, httpserver: HTTPServer
) -> None:
    base = serve_taxi_files(httpserver, {taxi_url_path("green", 2020, 10): REAL_GREEN})
    for _ in range(2):
        result = run_course_flow(engine, "green", 2020, 10, base)
        assert result.state == "SUCCESS", result.log_text()[-3000:]
        assert table_stats(fresh_pg_url, "green") == {
            "rows": 95_120,
            "ids": 95_120,
            "no_vendor": 42_510,
        }


# -- bad downloads and files: FAILED, the task's error logged, no partial month -----------------


@pytest.fixture(scope="module")
def loaded(
    pg_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A database with green 2019-01 loaded, and an engine on it, shared by the failure tests."""
    name = create_database(pg_server_url, "fh_taxi")
    url = _with_db(pg_server_url, name)
    home = tmp_path_factory.mktemp("fhtaxi")
    eng = make_engine(url, home)
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    try:
        jan = make_month(home / "files", "green", 2019, 1, rows=200)
        base = serve_taxi_files(server, {taxi_url_path("green", 2019, 1): jan})
        result = run_course_flow(eng, "green", 2019, 1, base)
        assert result.state == "SUCCESS", result.log_text()
        yield {"engine": eng, "url": url, "home": home}
    finally:
        server.clear()
        if server.is_running():
            server.stop()
        eng.close()
        drop_database(pg_server_url, name)


def _gzip(text: str) -> bytes:
    return gzip.compress(text.encode(), mtime=0)


def _green_header() -> str:
    return ",".join(layout_for("green").csv_columns)


def _serve_bytes(server: HTTPServer, path: str, body: bytes, content_type: str) -> None:
    server.expect_request(path).respond_with_data(body, content_type=content_type)


def _expect_failure(
    loaded: dict[str, Any], httpserver: HTTPServer, failed_task: str, *fragments: str
) -> Result:
    engine: Engine = loaded["engine"]
    before = table_stats(loaded["url"], "green")
    result = run_course_flow(engine, "green", 2019, 2, httpserver.url_for("").rstrip("/"))
    assert result.state == "FAILED", result.log_text()[-3000:]
    failed = [p for p, r in result.runs.items() if r.state == "FAILED"]
    assert failed_task in failed, failed
    assert all(failed_task.startswith(p) for p in failed), f"only {failed_task} and its parents"
    errors = "\n".join(r.message for r in result.logs if r.level == "ERROR")
    for fragment in fragments:
        assert fragment.lower() in errors.lower(), errors
    assert not any(p.endswith("merge_data") for p in result.runs)
    assert table_stats(loaded["url"], "green") == before
    assert table_stats(loaded["url"], "green", "green_tripdata_2019-02.csv")["rows"] == 0
    return result


FEB = taxi_url_path("green", 2019, 2)


def test_http_404(loaded: dict[str, Any], httpserver: HTTPServer) -> None:
    httpserver.no_handler_status_code = 404
    result = _expect_failure(loaded, httpserver, "download", "404", FEB)
    assert "extract" not in result.runs


def test_http_timeout(pg_url: str, loaded: dict[str, Any], httpserver: HTTPServer) -> None:
    def slow(_request: Request) -> Response:
        time.sleep(3)
        return Response(b"late", status=200)

    httpserver.expect_request(FEB).respond_with_handler(slow)
    engine: Engine = loaded["engine"]
    engine.settings.plugin_defaults = [
        {
            "type": "io.kestra.plugin.core.http.Download",
            "values": {"options": {"readTimeout": "PT1S"}},
        }
    ]
    try:
        started = time.monotonic()
        _expect_failure(loaded, httpserver, "download", "timed out")
        assert time.monotonic() - started < 3
    finally:
        engine.settings.plugin_defaults = []


def test_html_page_instead_of_gzip(loaded: dict[str, Any], httpserver: HTTPServer) -> None:
    page = b"<!DOCTYPE html><html><body>Rate limit exceeded</body></html>"
    _serve_bytes(httpserver, FEB, page, "text/html")
    _expect_failure(loaded, httpserver, "extract", "not in gzip format")


def test_truncated_gzip(loaded: dict[str, Any], httpserver: HTTPServer) -> None:
    whole = make_month(loaded["home"] / "files", "green", 2019, 2, rows=2000).read_bytes()
    _serve_bytes(httpserver, FEB, whole[: len(whole) // 2], "application/octet-stream")
    _expect_failure(loaded, httpserver, "extract", "unexpected end of file")


def test_csv_with_another_layout(loaded: dict[str, Any], httpserver: HTTPServer) -> None:
    yellow = make_month(loaded["home"] / "files", "yellow", 2019, 2, rows=50).read_bytes()
    _serve_bytes(httpserver, FEB, yellow, "application/octet-stream")
    _expect_failure(
        loaded,
        httpserver,
        "if_yellow_taxi/else/green_copy_in_to_staging_table",
        "green_tripdata_staging",
    )


def test_csv_with_ragged_rows(loaded: dict[str, Any], httpserver: HTTPServer) -> None:
    header = _green_header()
    good = make_month(loaded["home"] / "files", "green", 2019, 2, rows=100)
    with gzip.open(good, "rt", newline="") as handle:
        lines = handle.read().splitlines()[1:]
    lines[60] = ",".join(lines[60].split(",")[:5])
    body = io.StringIO()
    body.write(header + "\r\n" + "\r\n".join(lines) + "\r\n")
    _serve_bytes(httpserver, FEB, _gzip(body.getvalue()), "application/octet-stream")
    _expect_failure(
        loaded,
        httpserver,
        "if_yellow_taxi/else/green_copy_in_to_staging_table",
        "missing data for column",
    )


def test_csv_header_that_does_not_match(loaded: dict[str, Any], httpserver: HTTPServer) -> None:
    """Same number of columns, other names: the file is not this layout and must not load."""
    header = _green_header().split(",")
    good = make_month(loaded["home"] / "files", "green", 2019, 2, rows=100)
    with gzip.open(good, "rt", newline="") as handle:
        lines = handle.read().splitlines()[1:]
    wrong = [f"col_{i}" for i in range(len(header))]
    body = ",".join(wrong) + "\r\n" + "\r\n".join(lines) + "\r\n"
    _serve_bytes(httpserver, FEB, _gzip(body), "application/octet-stream")
    _expect_failure(
        loaded, httpserver, "if_yellow_taxi/else/green_copy_in_to_staging_table", "header"
    )
