"""Verification of loaded taxi months: the report, the CLI command and the task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conftest import jdbc_of
from flowhawk.config import Settings
from flowhawk.errors import TaskError
from flowhawk.taxi.tasks import Verify
from flowhawk.taxi.verify import verify_command, verify_months
from taxi_helpers import make_month, serve_taxi_files, taxi_url_path
from test_taxi_load import course_load, run_load


@pytest.fixture
def three_months(tmp_path: Path, fresh_pg_url: str, make_ctx: Any, httpserver: Any) -> str:
    """Green 2019-01..03 loaded by flowhawk (400 rows each) from a local HTTP server."""
    files = {
        taxi_url_path("green", 2019, m): make_month(tmp_path, "green", 2019, m, rows=400)
        for m in (1, 2, 3)
    }
    base = serve_taxi_files(httpserver, files)
    for path in files:
        run_load(make_ctx, fresh_pg_url, taxi="green", uri=base + path)
    return base


def settings_for(url: str, tmp_path: Path) -> Settings:
    defaults = [{"type": "io.kestra.plugin.jdbc.postgresql", "values": jdbc_of(url)}]
    return Settings(database_url=url, storage_path=tmp_path / "storage", plugin_defaults=defaults)


def test_complete_months_pass(three_months: str, fresh_pg_url: str) -> None:
    report = verify_months(fresh_pg_url, "green", [(2019, 1), (2019, 2), (2019, 3)])
    assert report.ok, report.problems()
    assert [m.rows for m in report.months] == [400, 400, 400]
    assert all(m.distinct_ids == 400 and m.source_rows == 400 for m in report.months)
    assert all(0 < m.without_vendor < 400 for m in report.months)
    assert report.leftover_staging == []


def test_discrepancies_are_reported(three_months: str, fresh_pg_url: str, tmp_path: Path) -> None:
    with psycopg.connect(fresh_pg_url) as conn:
        conn.execute(
            "DELETE FROM green_tripdata_2019_01 WHERE ctid IN (SELECT ctid FROM green_tripdata_2019_01 LIMIT 3)"
        )
        conn.execute(
            "INSERT INTO green_tripdata SELECT * FROM green_tripdata"
            " WHERE filename = 'green_tripdata_2019-02.csv' LIMIT 2"
        )
        conn.execute("CREATE TABLE green_tripdata_stg_dead_beef (LIKE green_tripdata)")
    report = verify_months(fresh_pg_url, "green", [(2019, m) for m in (1, 2, 3, 4)])
    problems = report.problems()
    assert "2019-01: 397 rows loaded but the source has 400" in problems
    assert "2019-02: 402 rows loaded but the source has 400" in problems
    assert "2019-02: 2 duplicate unique_row_id" in problems
    assert "2019-04: not loaded (no rows)" in problems
    assert "staging table left behind: public.green_tripdata_stg_dead_beef" in problems
    assert not any(p.startswith("2019-03") for p in problems)
    # the command: exit status 1 and the same findings as JSON
    code = verify_command(
        settings_for(fresh_pg_url, tmp_path), "green", "2019-01", "2019-04", None, False, True
    )
    assert code == 1


def test_changed_ids_are_counted_again(three_months: str, fresh_pg_url: str) -> None:
    """Same row count, one id overwritten with another's: the load's checksum no longer
    matches, so verification counts the distinct ids itself and finds the duplicate."""
    assert verify_months(fresh_pg_url, "green", [(2019, 3)]).ok
    with psycopg.connect(fresh_pg_url) as conn:
        conn.execute(
            "UPDATE green_tripdata_2019_03 SET unique_row_id = (SELECT min(unique_row_id)"
            " FROM green_tripdata_2019_03) WHERE ctid = (SELECT ctid FROM green_tripdata_2019_03"
            " WHERE unique_row_id <> (SELECT min(unique_row_id) FROM green_tripdata_2019_03)"
            " LIMIT 1)"
        )
    report = verify_months(fresh_pg_url, "green", [(2019, 3)])
    assert report.problems() == ["2019-03: 1 duplicate unique_row_id"]
    assert report.months[0].rows == 400 and report.months[0].distinct_ids == 399


def test_command_json_and_table(
    three_months: str, fresh_pg_url: str, tmp_path: Path, capsys: Any
) -> None:
    settings = settings_for(fresh_pg_url, tmp_path)
    assert verify_command(settings, "green", "2019-01", "2019-03", None, False, True) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and data["total_rows"] == 1200
    assert [m["month"] for m in data["months"]] == ["2019-01", "2019-02", "2019-03"]
    assert "password" not in json.dumps(data).lower()
    assert verify_command(settings, "green", "2019-01", "2019-03", None, False, False) == 0
    shown = capsys.readouterr().out
    assert "2019-02" in shown and "all months verified" in shown
    with pytest.raises(Exception, match="YYYY-MM"):
        verify_command(settings, "green", "2019-1", "2019-03", None, False, True)


def test_recount_and_course_loaded_months(
    three_months: str, fresh_pg_url: str, tmp_path: Path, httpserver: Any
) -> None:
    # a month loaded the course's way has no record: unverifiable until recounted
    gz = make_month(tmp_path, "green", 2019, 4, rows=250)
    course_load(fresh_pg_url, "green", gz, "public.green_tripdata", "green_tripdata_2019-04.csv")
    serve_taxi_files(httpserver, {taxi_url_path("green", 2019, 4): gz})
    plain = verify_months(fresh_pg_url, "green", [(2019, 4)])
    assert plain.problems() == [
        "2019-04: no recorded source row count (loaded another way?); use --recount"
    ]
    counted = verify_months(
        fresh_pg_url, "green", [(2019, 1), (2019, 4)], recount=True, base_url=three_months
    )
    assert counted.ok, counted.problems()
    assert all(m.recounted and m.source_rows == m.rows for m in counted.months)


def test_verify_task(three_months: str, fresh_pg_url: str, make_ctx: Any) -> None:
    def task(month: str) -> Verify:
        return Verify.model_validate(
            {
                "id": "verify",
                "type": "flowhawk.taxi.Verify",
                "taxi": "green",
                "month": month,
                **jdbc_of(fresh_pg_url),
            }
        )

    ctx = make_ctx({"trigger": {"date": "2019-02-01T09:00:00Z"}}, task_id="verify")
    out = task("{{ trigger.date | date('yyyy-MM') }}").run(ctx)
    assert out["ok"] and out["rows"] == 400 and out["filename"] == "green_tripdata_2019-02.csv"
    assert "green_tripdata_2019-02.csv: 400 rows (source 400)" in ctx.logs.text()
    with pytest.raises(TaskError, match="green_tripdata_2019-05.csv failed: 2019-05: not loaded"):
        task("2019-05").run(make_ctx(task_id="verify"))
    with pytest.raises(TaskError, match="property `month`"):
        task("May").run(make_ctx(task_id="verify"))
