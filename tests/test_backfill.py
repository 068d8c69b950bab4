"""Backfills on real PostgreSQL: planning, storing, only-missing, pause/resume/cancel,
parallelism, bad input, and the ``flowhawk backfill`` command (real subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from flowhawk.config import Settings
from flowhawk.engine import backfill as bf
from flowhawk.engine.service import Engine, NotFound
from flowhawk.engine.worker import WorkerPool
from flowhawk.store.records import ExecutionRecord
from flowhawk.store.scheduling import SchedulingStore

NS = "bf.test"

MONTHLY = f"""\
id: monthly
namespace: {NS}
labels: {{team: data}}
inputs:
  - id: taxi
    type: SELECT
    values: [yellow, green]
    defaults: yellow
  - id: note
    type: STRING
    defaults: none
tasks:
  - id: wait
    type: io.kestra.plugin.core.flow.Sleep
    duration: "PT{{{{ inputs.note == 'slow' ? '0.6' : '0.05' }}}}S"
  - id: maybe_fail
    type: io.kestra.plugin.core.flow.If
    condition: "{{{{ inputs.note == 'fail-march' and (trigger.date | date('MM')) == '03' }}}}"
    then:
      - id: boom
        type: io.kestra.plugin.core.execution.Fail
        errorMessage: March fails
triggers:
  - id: green
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 9 1 * *"
    inputs: {{taxi: green}}
    labels: {{origin: schedule}}
  - id: paris
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "30 2 * * *"
    timezone: Europe/Paris
"""

NO_TRIGGER = f"""\
id: plain
namespace: {NS}
tasks:
  - id: t
    type: io.kestra.plugin.core.log.Log
    message: hi
"""

HOURLY = f"""\
id: hourly
namespace: {NS}
tasks:
  - id: t
    type: io.kestra.plugin.core.log.Log
    message: "{{{{ trigger.date }}}}"
triggers:
  - id: h
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "@hourly"
"""

LIMITED = f"""\
id: limited
namespace: {NS}
concurrency: {{limit: 1}}
tasks:
  - id: wait
    type: io.kestra.plugin.core.flow.Sleep
    duration: PT0.4S
triggers:
  - id: d
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 0 * * *"
"""


@pytest.fixture
def engine(fresh_pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("FLOWHAWK_HOME", str(tmp_path))
    eng = Engine(Settings(database_url=fresh_pg_url, storage_path=tmp_path / "storage"))
    for source in (MONTHLY, NO_TRIGGER, HOURLY, LIMITED):
        eng.deploy_source(source)
    yield eng
    eng.close()


def request(**kw: object) -> bf.BackfillRequest:
    base: dict[str, object] = {
        "namespace": NS,
        "flow_id": "monthly",
        "trigger_id": "green",
        "start": "2019-01-01",
        "end": "2019-12-31",
    }
    base.update(kw)
    return bf.BackfillRequest(**base)  # type: ignore[arg-type]


def executions(engine: Engine, backfill_id: str) -> list[ExecutionRecord]:
    rows = engine.repo.list_executions(backfill_id=backfill_id)
    return sorted(rows, key=lambda e: e.seq or 0)


def counts(engine: Engine) -> tuple[int, int]:
    with engine.repo.conn() as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM backfills), (SELECT count(*) FROM executions)"
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def max_overlap(rows: list[ExecutionRecord]) -> int:
    """Most executions running at the same instant, from their start and end dates."""
    events = []
    for r in rows:
        assert r.start_date and r.end_date
        events += [(r.start_date, 1), (r.end_date, -1)]
    running = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        running += delta
        peak = max(peak, running)
    return peak


# -- planning -----------------------------------------------------------------------------
def test_plan_monthly_2019(engine: Engine) -> None:
    planned = bf.plan(engine, request())
    assert [t.isoformat() for t in planned.ticks] == [
        f"2019-{m:02d}-01T09:00:00+00:00" for m in range(1, 13)
    ]
    assert planned.lines()[0] == "2019-01-01T09:00:00+00:00 bf.test/monthly green"
    assert planned.summary() == "12 ticks"
    # a date-only end means the end of that day: the tick of 2019-12-01 09:00 is in
    assert len(bf.plan(engine, request(end="2019-12-01")).ticks) == 12
    assert len(bf.plan(engine, request(end="2019-12-01T08:59:59")).ticks) == 11
    assert len(bf.plan(engine, request(start="2019-01-01T09:00:00Z")).ticks) == 12
    assert len(bf.plan(engine, request(start="2019-01-01T09:00:01+00:00")).ticks) == 11
    assert bf.plan(engine, request(start="2019-01-02", end="2019-01-31")).ticks == []
    assert counts(engine) == (0, 0)


def test_plan_in_the_triggers_zone_across_dst(engine: Engine) -> None:
    planned = bf.plan(engine, request(trigger_id="paris", start="2024-03-30", end="2024-04-01"))
    assert [t.isoformat() for t in planned.ticks] == [
        "2024-03-30T02:30:00+01:00",
        "2024-03-31T03:00:00+02:00",
        "2024-04-01T02:30:00+02:00",
    ]
    fall = bf.plan(engine, request(trigger_id="paris", start="2024-10-27", end="2024-10-27"))
    assert [t.isoformat() for t in fall.ticks] == ["2024-10-27T02:30:00+02:00"]


def test_create_stores_executions_in_tick_order(engine: Engine) -> None:
    planned = bf.plan(
        engine,
        request(labels={"run": "replay"}, inputs={"note": "x"}, parallelism=2),
    )
    record = bf.create(engine.repo, planned)
    assert record is not None
    assert (record.state, record.ticks, record.parallelism) == ("RUNNING", 12, 2)
    assert record.start_date == datetime(2019, 1, 1, tzinfo=UTC)
    rows = executions(engine, record.id)
    assert [r.trigger_date for r in rows] == [
        datetime(2019, m, 1, 9, tzinfo=UTC) for m in range(1, 13)
    ]
    first, second = rows[0], rows[1]
    assert {r.state for r in rows} == {"CREATED"}
    assert first.labels == {
        "team": "data",
        "origin": "schedule",
        "run": "replay",
        "backfill": "true",
    }
    assert first.inputs == {"taxi": "green", "note": "x"}
    assert first.trigger_id == "green" and first.backfill_id == record.id
    assert first.trigger == {
        "id": "green",
        "date": "2019-01-01T09:00:00+00:00",
        "next": "2019-02-01T09:00:00+00:00",
        "previous": "2018-12-01T09:00:00+00:00",
    }
    assert second.trigger is not None and second.trigger["previous"] == first.trigger["date"]
    assert rows[-1].trigger is not None
    assert rows[-1].trigger["next"] == "2020-01-01T09:00:00+00:00"
    with engine.repo.conn() as conn:
        assert conn.execute("SELECT bool_or(scheduled) FROM executions").fetchone() == (False,)
    record2, progress = bf.status(engine.repo, record.id)
    assert progress.to_json() == {
        "total": 12,
        "done": 0,
        "failed": 0,
        "cancelled": 0,
        "running": 0,
        "queued": 0,
        "pending": 12,
    }
    assert bf.describe(record2, progress)["start"] == "2019-01-01T00:00:00+00:00"


def test_ten_thousand_ticks_planned_and_stored(engine: Engine) -> None:
    started = time.perf_counter()
    planned = bf.plan(
        engine,
        bf.BackfillRequest(NS, "hourly", "2019-01-01T00:00:00Z", "2020-02-21T15:00:00Z"),
    )
    planned_at = time.perf_counter()
    record = bf.create(engine.repo, planned)
    done = time.perf_counter()
    assert record is not None and record.ticks == 10_000
    print(
        f"\n10,000 ticks: planned in {planned_at - started:.2f} s,"
        f" stored in {done - planned_at:.2f} s, total {done - started:.2f} s"
    )
    with engine.repo.conn() as conn:
        rows = conn.execute(
            "SELECT trigger_date FROM executions WHERE backfill_id = %s ORDER BY seq", (record.id,)
        ).fetchall()
    dates = [r[0] for r in rows]
    assert len(dates) == 10_000 and dates == sorted(dates)
    assert dates[-1] - dates[0] == timedelta(hours=9_999)


# -- only missing ---------------------------------------------------------------------------
def test_only_missing_skips_done_and_under_way_ticks(engine: Engine) -> None:
    flow, revision = engine.flow(NS, "monthly")
    states = {1: "SUCCESS", 2: "WARNING", 3: "FAILED", 4: "RUNNING", 5: "KILLED", 6: "CANCELLED"}
    for month, state in states.items():
        started = engine.create_execution(
            flow,
            revision,
            trigger_id="green",
            trigger_date=datetime(2019, month, 1, 9, tzinfo=UTC),
        )
        engine.repo.set_execution_state(started.execution.id, state)
    # a scheduled one counts too, and one still CREATED is under way
    with engine.repo.conn() as conn:
        conn.execute(
            "INSERT INTO executions (id, namespace, flow_id, flow_revision, state, trigger_id,"
            " trigger_date, scheduled) VALUES ('s7', %s, 'monthly', 1, 'SUCCESS', 'green',"
            " '2019-07-01 09:00Z', true), ('s8', %s, 'monthly', 1, 'CREATED', 'green',"
            " '2019-08-01 09:00Z', true)",
            (NS, NS),
        )
    planned = bf.plan(engine, request(only_missing=True))
    assert [t.month for t in planned.ticks] == [3, 5, 6, 9, 10, 11, 12]
    assert {t.month: s for t, s in planned.skipped} == {
        1: "SUCCESS",
        2: "WARNING",
        4: "RUNNING",
        7: "SUCCESS",
        8: "CREATED",
    }
    assert planned.summary() == "7 ticks (5 skipped: already done or under way)"
    record = bf.create(engine.repo, planned)
    assert record is not None and record.skipped == 5 and record.ticks == 7
    # planning again: the backfill's own executions are under way now
    again = bf.plan(engine, request(only_missing=True))
    assert again.ticks == []


# -- running: parallelism, pause, resume, cancel --------------------------------------------
def test_parallelism_pause_resume(engine: Engine) -> None:
    planned = bf.plan(engine, request(end="2019-08-31", parallelism=2, inputs={"note": "slow"}))
    record = bf.create(engine.repo, planned)
    assert record is not None
    bf.pause(engine.repo, record.id)
    pool = WorkerPool(engine, threads=4)
    try:
        pool.start()
        time.sleep(2.0)
        paused, progress = bf.status(engine.repo, record.id)
        assert paused.state == "PAUSED" and progress.pending == 8
        bf.resume(engine.repo, record.id)
        assert pool.run_until(lambda: bf.status(engine.repo, record.id)[1].finished, 60)
    finally:
        pool.stop(timeout=10)
    rows = executions(engine, record.id)
    assert {r.state for r in rows} == {"SUCCESS"}
    assert max_overlap(rows) == 2
    # started in tick order
    starts = [r.start_date for r in rows]
    assert starts == sorted(starts)  # type: ignore[type-var]
    assert bf.status(engine.repo, record.id)[0].state == "SUCCESS"


def test_never_more_than_the_flows_concurrency_limit(engine: Engine) -> None:
    planned = bf.BackfillRequest(NS, "limited", "2019-01-01", "2019-01-05", parallelism=3)
    plan = bf.plan(engine, planned)
    assert plan.notes and "concurrency limit 1" in plan.notes[0]
    record = bf.create(engine.repo, plan)
    assert record is not None
    pool = WorkerPool(engine, threads=4)
    try:
        assert pool.run_until(lambda: bf.status(engine.repo, record.id)[1].finished, 60)
    finally:
        pool.stop(timeout=10)
    rows = executions(engine, record.id)
    assert [r.state for r in rows] == ["SUCCESS"] * 5
    assert max_overlap(rows) == 1


def test_cancel_lets_running_ones_finish(engine: Engine) -> None:
    record = bf.create(engine.repo, bf.plan(engine, request(inputs={"note": "slow"})))
    assert record is not None
    pool = WorkerPool(engine, threads=2)
    try:
        pool.start()
        assert pool.run_until(lambda: bf.status(engine.repo, record.id)[1].running == 1, 30)
        cancelled = bf.cancel(engine.repo, record.id)
        assert cancelled == 11
        assert pool.run_until(lambda: bf.status(engine.repo, record.id)[1].finished, 30)
    finally:
        pool.stop(timeout=10)
    states = [r.state for r in executions(engine, record.id)]
    assert states == ["SUCCESS"] + ["CANCELLED"] * 11
    final, progress = bf.status(engine.repo, record.id)
    assert final.state == "CANCELLED" and progress.cancelled == 11 and progress.done == 1
    with pytest.raises(bf.BackfillError, match="already ended CANCELLED"):
        bf.cancel(engine.repo, record.id)
    with pytest.raises(bf.BackfillError, match="only a PAUSED backfill"):
        bf.resume(engine.repo, record.id)
    with pytest.raises(bf.BackfillError, match="not found"):
        bf.pause(engine.repo, "nope")


# -- bad input: a clear error, nothing created ----------------------------------------------
@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"start": "2020-01-01", "end": "2019-01-01"}, "is after its end"),
        ({"trigger_id": "nope"}, "has no Schedule trigger `nope` (known: green, paris)"),
        ({"trigger_id": None}, "has 2 Schedule triggers (green, paris); choose one with --trigger"),
        ({"flow_id": "plain", "trigger_id": None}, "flow bf.test/plain has no Schedule trigger"),
        ({"parallelism": 0}, "--parallelism must be at least 1, got 0"),
        ({"start": "last tuesday"}, "--start: invalid date/time 'last tuesday'"),
        ({"inputs": {"taxi": "purple"}}, "input `taxi`"),
        ({"inputs": {"nope": "1"}}, "input `nope`: unknown input"),
    ],
)
def test_bad_requests(engine: Engine, kw: dict[str, object], message: str) -> None:
    with pytest.raises(bf.BackfillError) as info:
        bf.plan(engine, request(**kw))
    assert message in str(info.value)
    assert counts(engine) == (0, 0)


def test_unknown_flow(engine: Engine) -> None:
    with pytest.raises(NotFound, match="flow bf.test/ghost not found"):
        bf.plan(engine, request(flow_id="ghost"))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("cron", "61 * * * *", "trigger `green`: invalid cron '61 * * * *': minute field '61'"),
        ("timezone", "Mars/Olympus", "trigger `green`: unknown time zone 'Mars/Olympus'"),
    ],
)
def test_bad_cron_or_zone_in_the_trigger(
    engine: Engine, field: str, value: str, message: str
) -> None:
    # deployed flows are validated; the message path is checked on a flow changed after parsing
    flow, revision = engine.flow(NS, "monthly")
    setattr(flow.triggers[0], field, value)
    with pytest.raises(bf.BackfillError) as info:
        bf.plan_for_flow(engine.repo, flow, revision, request())
    assert message in str(info.value)
    assert counts(engine) == (0, 0)


# -- the command line -----------------------------------------------------------------------
def cli(url: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FLOWHAWK_DATABASE_URL": url, "FLOWHAWK_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "flowhawk", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_cli_dry_run_and_empty_plan(engine: Engine, fresh_pg_url: str, tmp_path: Path) -> None:
    ref = f"{NS}/monthly"
    out = cli(fresh_pg_url, tmp_path, "backfill", ref, "--trigger", "green", "--start",
              "2019-01-01", "--end", "2019-12-31", "--dry-run")  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("2019-01-01T09:00:00+00:00")
    assert lines[11].startswith("2019-12-01T09:00:00+00:00")
    assert lines[12] == "12 ticks"
    empty = cli(fresh_pg_url, tmp_path, "backfill", "create", ref, "--trigger", "green",
                "--start", "2019-01-02", "--end", "2019-01-31")  # fmt: skip
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout.strip() == "0 ticks"
    assert counts(engine) == (0, 0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trigger", "nope"], "has no Schedule trigger `nope`"),
        (["--parallelism", "0"], "--parallelism must be at least 1"),
        (["--start", "2020-01-01"], "is after its end"),
        (["--input", "taxi=purple"], "input `taxi`"),
    ],
)
def test_cli_bad_input(
    engine: Engine, fresh_pg_url: str, tmp_path: Path, args: list[str], message: str
) -> None:
    base = {"--trigger": "green", "--start": "2019-01-01", "--end": "2019-12-31"}
    for key, value in zip(args[::2], args[1::2], strict=True):
        base[key] = value
    flat = [item for pair in base.items() for item in pair]
    out = cli(fresh_pg_url, tmp_path, "backfill", f"{NS}/monthly", *flat)
    assert out.returncode == 1
    assert message in out.stderr and "Traceback" not in out.stderr
    assert counts(engine) == (0, 0)


def test_cli_unknown_flow_and_unparsable_stored_flow(
    engine: Engine, fresh_pg_url: str, tmp_path: Path
) -> None:
    out = cli(fresh_pg_url, tmp_path, "backfill", f"{NS}/ghost", "--start", "2019-01-01",
              "--end", "2019-02-01")  # fmt: skip
    assert out.returncode == 1 and "flow bf.test/ghost not found" in out.stderr
    broken = MONTHLY.replace('"0 9 1 * *"', '"0 9 32 * *"').replace("id: monthly", "id: broken")
    engine.repo.deploy_flow(NS, "broken", broken)  # stored behind the validator's back
    out = cli(fresh_pg_url, tmp_path, "backfill", f"{NS}/broken", "--trigger", "green",
              "--start", "2019-01-01", "--end", "2019-02-01")  # fmt: skip
    assert out.returncode == 1
    assert "triggers[0].cron" in out.stderr and "day-of-month" in out.stderr
    assert "nothing created" in out.stderr
    assert counts(engine) == (0, 0)


def test_cli_wait_runs_workers_itself_and_manages_backfills(
    engine: Engine, fresh_pg_url: str, tmp_path: Path
) -> None:
    ref = f"{NS}/monthly"
    out = cli(fresh_pg_url, tmp_path, "backfill", ref, "--trigger", "green", "--start",
              "2019-01-01", "--end", "2019-06-30", "--parallelism", "2", "--label", "who=me",
              "--wait")  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no live worker" in out.stderr
    assert "SUCCESS: done 6, failed 0, running 0, queued 0, pending 0" in out.stdout
    [record] = SchedulingStore(engine.repo).list_backfills()
    rows = executions(engine, record.id)
    assert [r.state for r in rows] == ["SUCCESS"] * 6
    assert rows[0].labels["who"] == "me" and rows[0].labels["backfill"] == "true"
    # a failing tick makes --wait exit 1
    out = cli(fresh_pg_url, tmp_path, "backfill", "create", ref, "--trigger", "green",
              "--start", "2019-01-01", "--end", "2019-04-30", "--input", "note=fail-march",
              "--wait")  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAILED: done 3, failed 1" in out.stdout
    listed = cli(fresh_pg_url, tmp_path, "backfill", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert [(b["state"], b["progress"]["done"]) for b in data] == [("FAILED", 3), ("SUCCESS", 6)]
    shown = cli(fresh_pg_url, tmp_path, "backfill", "show", record.id)
    assert shown.returncode == 0 and "progress: done 6, failed 0" in shown.stdout
    # pause / resume / cancel through the CLI on a new backfill (no worker running now)
    created = cli(fresh_pg_url, tmp_path, "backfill", ref, "--trigger", "green", "--start",
                  "2020-01-01", "--end", "2020-12-31", "--json")  # fmt: skip
    assert created.returncode == 0, created.stderr
    new_id = json.loads(created.stdout)["id"]
    assert "paused" in cli(fresh_pg_url, tmp_path, "backfill", "pause", new_id).stdout
    assert bf.get(engine.repo, new_id).state == "PAUSED"
    assert "resumed" in cli(fresh_pg_url, tmp_path, "backfill", "resume", new_id).stdout
    cancelled = cli(fresh_pg_url, tmp_path, "backfill", "cancel", new_id)
    assert "12 execution(s) not started cancelled" in cancelled.stdout
    missing = cli(fresh_pg_url, tmp_path, "backfill", "show", "nope")
    assert missing.returncode == 1 and "backfill nope not found" in missing.stderr


def test_date_bounds_are_dates(engine: Engine) -> None:
    planned = bf.plan(engine, request(start="2019-03-01", end="2019-03-01"))
    assert [t.date() for t in planned.ticks] == [date(2019, 3, 1)]
    assert planned.end.isoformat() == "2019-03-01T23:59:59.999999+00:00"
