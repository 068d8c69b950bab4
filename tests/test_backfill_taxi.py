"""The course's scenario: backfill the scheduled taxi flow for the 12 months of 2019, green,
with ``--parallelism 2``, against a local HTTP server standing in for the release downloads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
from pytest_httpserver import HTTPServer

from flowhawk.config import Settings
from flowhawk.engine.service import Engine
from taxi_helpers import make_months, serve_taxi_files, taxi_url_path

FLOW = Path(__file__).resolve().parents[1] / "flows" / "postgres_taxi_scheduled.yaml"
REF = "zoomcamp/postgres_taxi_scheduled"
MONTHS = [(2019, m) for m in range(1, 13)]


def _cli(url: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLOWHAWK_DATABASE_URL": url, "FLOWHAWK_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "flowhawk", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _backfill(url: str, home: Path, base: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return _cli(url, home, "backfill", REF, "--trigger", "green_schedule", "--start",
                "2019-01-01", "--end", "2019-12-31", "--parallelism", "2", "--input",
                f"base_url={base}", "--wait", *extra)  # fmt: skip


def _months_loaded(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT filename, count(*) FROM public.green_tripdata GROUP BY filename ORDER BY 1"
        ).fetchall()
    assert all(count == 200 for _, count in rows), rows
    return [name for name, _ in rows]


def _engine(url: str, home: Path) -> Engine:
    os.environ["FLOWHAWK_HOME"] = str(home)
    return Engine(Settings(database_url=url, storage_path=home / "storage"))


def test_backfill_2019_green(fresh_pg_url: str, tmp_path: Path, httpserver: HTTPServer) -> None:
    base = serve_taxi_files(httpserver, make_months(tmp_path, "green", MONTHS, rows=200))
    engine = _engine(fresh_pg_url, tmp_path)
    engine.deploy_file(FLOW)
    out = _backfill(fresh_pg_url, tmp_path, base)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: done 12, failed 0" in out.stdout
    rows = engine.repo.list_executions(labels={"backfill": "true"})
    engine.close()
    assert len(rows) == 12
    assert {r.state for r in rows} == {"SUCCESS"}
    assert sorted(r.labels["file"] for r in rows) == [
        f"green_tripdata_2019-{m:02d}.csv" for m in range(1, 13)
    ]
    assert _months_loaded(fresh_pg_url) == [
        f"green_tripdata_2019-{m:02d}.csv" for m in range(1, 13)
    ]


def test_only_missing_reruns_the_failed_months(
    fresh_pg_url: str, tmp_path: Path, httpserver: HTTPServer
) -> None:
    files = make_months(tmp_path, "green", MONTHS, rows=200)
    missing = {taxi_url_path("green", 2019, m) for m in (4, 9)}
    # April and September are not published yet: their downloads answer 404
    base = serve_taxi_files(httpserver, {p: f for p, f in files.items() if p not in missing})
    engine = _engine(fresh_pg_url, tmp_path)
    engine.deploy_file(FLOW)
    first = _backfill(fresh_pg_url, tmp_path, base)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "FAILED: done 10, failed 2" in first.stdout
    failed = engine.repo.list_executions(states=["FAILED"])
    assert sorted(r.trigger_date.month for r in failed if r.trigger_date) == [4, 9]
    assert len(_months_loaded(fresh_pg_url)) == 10
    # now published: only the two failed months run again
    serve_taxi_files(httpserver, {p: f for p, f in files.items() if p in missing})
    dry = _cli(fresh_pg_url, tmp_path, "backfill", REF, "--trigger", "green_schedule",
               "--start", "2019-01-01", "--end", "2019-12-31", "--only-missing", "--dry-run")  # fmt: skip
    assert dry.stdout.splitlines() == [
        f"2019-04-01T09:00:00+00:00 {REF} green_schedule",
        f"2019-09-01T09:00:00+00:00 {REF} green_schedule",
        "2 ticks (10 skipped: already done or under way)",
    ]
    second = _backfill(fresh_pg_url, tmp_path, base, "--only-missing")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "SUCCESS: done 2, failed 0" in second.stdout
    rows = engine.repo.list_executions(labels={"backfill": "true"})
    engine.close()
    assert len(rows) == 14
    reruns = [r for r in rows if r.backfill_id != failed[0].backfill_id]
    assert sorted(r.trigger_date.month for r in reruns if r.trigger_date) == [4, 9]
    assert {r.state for r in reruns} == {"SUCCESS"}
    assert _months_loaded(fresh_pg_url) == [
        f"green_tripdata_2019-{m:02d}.csv" for m in range(1, 13)
    ]
