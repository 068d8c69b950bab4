"""The scheduler against a controllable clock, on real PostgreSQL (no real waiting).

Each test deploys flows, then calls ``Scheduler.tick_once(now)`` at chosen instants and reads
back the executions the scheduler stored: which ticks fired, in which zone, how often.
"""

from __future__ import annotations

import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from flowhawk.config import Settings
from flowhawk.engine.scheduler import (
    Scheduler,
    apply_stop_after,
    list_triggers,
    set_trigger_enabled,
)
from flowhawk.engine.service import Engine
from flowhawk.errors import FlowhawkError
from flowhawk.store.scheduling import NewExecution, SchedulingStore

PARIS = ZoneInfo("Europe/Paris")
NS = "sched.test"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.fixture
def engine(fresh_pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("FLOWHAWK_HOME", str(tmp_path))
    eng = Engine(Settings(database_url=fresh_pg_url, storage_path=tmp_path / "storage"))
    yield eng
    eng.close()


def flow_source(
    trigger: str,
    *,
    flow_id: str = "f",
    extra: str = "",
    task: str = "type: io.kestra.plugin.core.log.Log\n    message: tick {{ trigger.date }}",
) -> str:
    """A one-task flow with the given trigger block (YAML, indented as a list item)."""
    return (
        f"id: {flow_id}\nnamespace: {NS}\n{extra}"
        "inputs:\n  - id: who\n    type: STRING\n    defaults: nobody\n"
        f"tasks:\n  - id: t\n    {task}\n"
        "triggers:\n" + textwrap.indent(textwrap.dedent(trigger).strip(), "  ") + "\n"
    )


def schedule(cron: str, *, tid: str = "s", more: str = "") -> str:
    text = f'- id: {tid}\n  type: io.kestra.plugin.core.trigger.Schedule\n  cron: "{cron}"\n'
    if more:
        text += textwrap.indent(textwrap.dedent(more).strip(), "  ") + "\n"
    return text


def deploy(engine: Engine, source: str) -> int:
    _, revision, _ = engine.deploy_source(source)
    return revision


def fired(engine: Engine, flow_id: str = "f") -> list[datetime]:
    """Trigger dates of the scheduled executions of a flow, in creation order."""
    with engine.repo.conn() as conn:
        rows = conn.execute(
            "SELECT trigger_date FROM executions WHERE namespace = %s AND flow_id = %s"
            " AND scheduled ORDER BY seq",
            (NS, flow_id),
        ).fetchall()
    return [r[0] for r in rows]


def walk(sched: Scheduler, start: datetime, end: datetime, step: timedelta) -> None:
    """Passes at every ``step`` from ``start`` to ``end`` (a scheduler that never stops)."""
    now = start
    while now <= end:
        sched.tick_once(now)
        now += step


# -- a new flow, trigger variables, inputs and labels --------------------------------------
def test_new_flow_starts_from_now_and_carries_trigger_variables(engine: Engine) -> None:
    deploy(
        engine,
        flow_source(
            schedule("0 9 * * *", more="inputs: {who: sched}\nlabels: {origin: cron}"),
            extra="labels: {team: data}\n",
        ),
    )
    sched = Scheduler(engine)
    # deployed at 10:00: today's 09:00 is in the past and must not fire
    assert sched.tick_once(utc(2024, 1, 31, 10)).created == []
    [row] = list_triggers(engine.repo, NS)
    assert row.next_date == utc(2024, 2, 1, 9) and row.last_date is None
    assert sched.tick_once(utc(2024, 2, 1, 8, 59, 59)).created == []
    [execution_id] = sched.tick_once(utc(2024, 2, 1, 9, 0, 0, 400000)).created
    execution = engine.execution(execution_id)
    assert execution.state == "CREATED"
    assert execution.trigger_id == "s" and execution.trigger_date == utc(2024, 2, 1, 9)
    assert execution.trigger == {
        "id": "s",
        "date": "2024-02-01T09:00:00+00:00",
        "next": "2024-02-02T09:00:00+00:00",
        "previous": "2024-01-31T09:00:00+00:00",
    }
    assert execution.inputs == {"who": "sched"}
    assert execution.labels == {"team": "data", "origin": "cron"}
    [row] = list_triggers(engine.repo, NS)
    assert row.last_date == utc(2024, 2, 1, 9) and row.next_date == utc(2024, 2, 2, 9)
    assert row.to_json()["nextDate"] == "2024-02-02T09:00:00+00:00"
    # the same instant again creates nothing more
    assert sched.tick_once(utc(2024, 2, 1, 9, 0, 1)).created == []
    assert fired(engine) == [utc(2024, 2, 1, 9)]


# -- calendar edge cases -------------------------------------------------------------------
def test_month_ends_and_leap_day(engine: Engine) -> None:
    deploy(engine, flow_source(schedule("0 12 31 * *", tid="thirty_first"), flow_id="m31"))
    deploy(engine, flow_source(schedule("0 12 L * *", tid="last_day"), flow_id="mlast"))
    deploy(engine, flow_source(schedule("0 6 29 2 *", tid="leap"), flow_id="leap"))
    sched = Scheduler(engine)
    sched.tick_once(utc(2023, 12, 31, 13))
    walk(sched, utc(2024, 1, 1), utc(2024, 5, 1), timedelta(hours=6))
    assert fired(engine, "m31") == [utc(2024, 1, 31, 12), utc(2024, 3, 31, 12)]
    assert fired(engine, "mlast") == [
        utc(2024, 1, 31, 12),
        utc(2024, 2, 29, 12),
        utc(2024, 3, 31, 12),
        utc(2024, 4, 30, 12),
    ]
    assert fired(engine, "leap") == [utc(2024, 2, 29, 6)]
    # years later (downtime, default recoverMissedSchedules ALL): only leap years' 29th
    sched.tick_once(utc(2029, 1, 1))
    assert fired(engine, "leap") == [utc(2024, 2, 29, 6), utc(2028, 2, 29, 6)]


def test_every_ten_seconds_with_seconds_field(engine: Engine) -> None:
    deploy(engine, flow_source(schedule("*/10 * * * * *", more="withSeconds: true")))
    sched = Scheduler(engine)
    sched.tick_once(utc(2024, 6, 1, 12, 0, 0, 500000))
    walk(sched, utc(2024, 6, 1, 12, 0, 1), utc(2024, 6, 1, 12, 1, 0), timedelta(seconds=1))
    assert fired(engine) == [utc(2024, 6, 1, 12, 0, s) for s in (10, 20, 30, 40, 50)] + [
        utc(2024, 6, 1, 12, 1)
    ]


# -- DST (Europe/Paris: 2024-03-31 02:00 -> 03:00, 2024-10-27 03:00 -> 02:00) ---------------
def _local(fired_dates: list[datetime]) -> list[str]:
    return [d.astimezone(PARIS).isoformat() for d in fired_dates]


def test_dst_spring_forward(engine: Engine) -> None:
    tz = "timezone: Europe/Paris"
    deploy(engine, flow_source(schedule("30 2 * * *", more=tz), flow_id="fixed"))
    deploy(engine, flow_source(schedule("0 * * * *", more=tz), flow_id="hourly"))
    sched = Scheduler(engine)
    sched.tick_once(utc(2024, 3, 29, 23))
    walk(sched, utc(2024, 3, 30), utc(2024, 4, 1, 6), timedelta(minutes=15))
    # a fixed-time job in the skipped hour fires once, when the gap ends
    assert _local(fired(engine, "fixed")) == [
        "2024-03-30T02:30:00+01:00",
        "2024-03-31T03:00:00+02:00",
        "2024-04-01T02:30:00+02:00",
    ]
    hours = _local(fired(engine, "hourly"))
    # a wildcard job keeps real time: 01:00+01:00 is followed by 03:00+02:00, one hour later
    i = hours.index("2024-03-31T01:00:00+01:00")
    assert hours[i + 1] == "2024-03-31T03:00:00+02:00"
    assert not any(h.startswith("2024-03-31T02:") for h in hours)
    executions = engine.repo.list_executions(namespace=NS, flow_id="fixed")
    gap = next(e for e in executions if e.trigger_date == utc(2024, 3, 31, 1))
    assert gap.trigger is not None and gap.trigger["date"] == "2024-03-31T03:00:00+02:00"


def test_dst_fall_back(engine: Engine) -> None:
    tz = "timezone: Europe/Paris"
    deploy(engine, flow_source(schedule("30 2 * * *", more=tz), flow_id="fixed"))
    deploy(engine, flow_source(schedule("30 * * * *", more=tz), flow_id="hourly"))
    sched = Scheduler(engine)
    sched.tick_once(utc(2024, 10, 25, 23))
    walk(sched, utc(2024, 10, 26), utc(2024, 10, 28, 6), timedelta(minutes=10))
    # a fixed-time job fires once, at the first 02:30
    assert _local(fired(engine, "fixed")) == [
        "2024-10-26T02:30:00+02:00",
        "2024-10-27T02:30:00+02:00",
        "2024-10-28T02:30:00+01:00",
    ]
    # a wildcard job fires in both occurrences of the repeated hour
    hours = _local(fired(engine, "hourly"))
    assert "2024-10-27T02:30:00+02:00" in hours and "2024-10-27T02:30:00+01:00" in hours
    day = [h for h in hours if h.startswith("2024-10-27")]
    assert len(day) == 25
    assert len(set(fired(engine, "hourly"))) == len(hours)


# -- missed ticks after downtime -----------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "expected_hours"),
    [("ALL", [11, 12, 13, 14, 15]), ("LAST", [15]), ("NONE", [])],
)
def test_recover_missed_schedules(engine: Engine, policy: str, expected_hours: list[int]) -> None:
    deploy(engine, flow_source(schedule("0 * * * *", more=f"recoverMissedSchedules: {policy}")))
    sched = Scheduler(engine)
    sched.tick_once(utc(2024, 5, 1, 10, 0, 30))  # first tick due: 11:00
    # down from 10:00:30 to 15:20: 11:00 .. 15:00 were missed
    sched.tick_once(utc(2024, 5, 1, 15, 20))
    assert fired(engine) == [utc(2024, 5, 1, h) for h in expected_hours]
    # whatever the policy, the schedule then goes on from now: 16:00 fires on time
    sched.tick_once(utc(2024, 5, 1, 16, 0, 2))
    assert fired(engine)[-1] == utc(2024, 5, 1, 16)
    assert len(fired(engine)) == len(expected_hours) + 1


def test_on_time_tick_fires_with_policy_none(engine: Engine) -> None:
    deploy(engine, flow_source(schedule("*/5 * * * *", more="recoverMissedSchedules: NONE")))
    sched = Scheduler(engine)
    sched.tick_once(utc(2024, 5, 1, 10, 1))
    sched.tick_once(utc(2024, 5, 1, 10, 5, 3))
    sched.tick_once(utc(2024, 5, 1, 10, 10, 40))
    assert fired(engine) == [utc(2024, 5, 1, 10, 5), utc(2024, 5, 1, 10, 10)]


# -- disabling -----------------------------------------------------------------------------
def test_disabled_flow_and_trigger_do_not_fire_and_restart_from_now(engine: Engine) -> None:
    trig = schedule("0 * * * *")
    deploy(engine, flow_source(trig, flow_id="a", extra="disabled: true\n"))
    deploy(engine, flow_source(schedule("0 * * * *", more="disabled: true"), flow_id="b"))
    sched = Scheduler(engine)
    sched.tick_once(utc(2024, 5, 1, 9, 30))
    walk(sched, utc(2024, 5, 1, 10), utc(2024, 5, 1, 13), timedelta(minutes=30))
    assert fired(engine, "a") == [] and fired(engine, "b") == []
    rows = {r.flow_id: r for r in list_triggers(engine.repo, NS)}
    assert not rows["a"].enabled and rows["a"].to_json()["nextDate"] is None
    # enabled again at 13:10: no catch-up of 10:00..13:00, the next tick is 14:00
    deploy(engine, flow_source(trig, flow_id="a"))
    deploy(engine, flow_source(schedule("0 * * * *"), flow_id="b"))
    sched.tick_once(utc(2024, 5, 1, 13, 10))
    assert fired(engine, "a") == [] and fired(engine, "b") == []
    sched.tick_once(utc(2024, 5, 1, 14, 0, 1))
    assert fired(engine, "a") == [utc(2024, 5, 1, 14)]
    assert fired(engine, "b") == [utc(2024, 5, 1, 14)]


def test_disable_through_the_api(engine: Engine) -> None:
    deploy(engine, flow_source(schedule("0 * * * *")))
    sched = Scheduler(engine)
    sched.tick_once(utc(2024, 5, 1, 9, 30))
    row = set_trigger_enabled(engine.repo, NS, "f", "s", False, now=utc(2024, 5, 1, 9, 40))
    assert row.disabled and row.disabled_reason == "disabled through the API"
    walk(sched, utc(2024, 5, 1, 10), utc(2024, 5, 1, 12), timedelta(minutes=30))
    assert fired(engine) == []
    # a redeploy (new revision) does not switch it back on
    deploy(engine, flow_source(schedule("0 * * * *"), extra="description: edited\n"))
    sched.tick_once(utc(2024, 5, 1, 12, 0, 5))
    assert fired(engine) == []
    set_trigger_enabled(engine.repo, NS, "f", "s", True, now=utc(2024, 5, 1, 12, 10))
    sched.tick_once(utc(2024, 5, 1, 12, 20))
    assert fired(engine) == []
    sched.tick_once(utc(2024, 5, 1, 13, 0, 1))
    assert fired(engine) == [utc(2024, 5, 1, 13)]
    with pytest.raises(FlowhawkError, match="no Schedule trigger `nope`"):
        set_trigger_enabled(engine.repo, NS, "f", "nope", False)


def test_stop_after_disables_the_trigger(engine: Engine) -> None:
    from flowhawk.engine.worker import WorkerPool

    fail_task = "type: io.kestra.plugin.core.execution.Fail\n    errorMessage: boom"
    deploy(
        engine,
        flow_source(schedule("0 * * * *", more="stopAfter: [FAILED]"), task=fail_task),
    )
    sched = Scheduler(engine)
    sched.tick_once(utc(2024, 5, 1, 9, 30))
    [first] = sched.tick_once(utc(2024, 5, 1, 10, 0, 1)).created
    pool = WorkerPool(engine, threads=1)
    try:
        assert pool.run_until(lambda: engine.execution(first).state == "FAILED", timeout=60)
        # the worker calls apply_stop_after once the execution has ended
        assert pool.run_until(lambda: list_triggers(engine.repo, NS)[0].disabled, timeout=10)
    finally:
        pool.stop(timeout=10)
    [row] = list_triggers(engine.repo, NS)
    assert row.disabled_reason == f"stopAfter: execution {first} ended FAILED"
    walk(sched, utc(2024, 5, 1, 11), utc(2024, 5, 1, 13), timedelta(minutes=30))
    assert fired(engine) == [utc(2024, 5, 1, 10)]


def test_stop_after_ignores_other_states_and_unscheduled_executions(engine: Engine) -> None:
    deploy(engine, flow_source(schedule("0 * * * *", more="stopAfter: [FAILED]")))
    sched = Scheduler(engine)
    sched.tick_once(utc(2024, 5, 1, 9, 30))
    [ok] = sched.tick_once(utc(2024, 5, 1, 10, 0, 1)).created
    engine.repo.set_execution_state(ok, "SUCCESS")
    assert apply_stop_after(engine.repo, engine.execution(ok)) is False
    flow, revision = engine.flow(NS, "f")
    manual = engine.create_execution(flow, revision, trigger_id="s", trigger_date=utc(2024, 1, 1))
    engine.repo.set_execution_state(manual.execution.id, "FAILED")
    assert apply_stop_after(engine.repo, manual.execution.id) is False
    assert list_triggers(engine.repo, NS)[0].enabled
    [bad] = sched.tick_once(utc(2024, 5, 1, 11, 0, 1)).created
    engine.repo.set_execution_state(bad, "FAILED")
    assert apply_stop_after(engine.repo, bad) is True
    assert not list_triggers(engine.repo, NS)[0].enabled


# -- edits and deletion --------------------------------------------------------------------
def test_edited_flow_keeps_state_unless_the_schedule_changes(engine: Engine) -> None:
    deploy(engine, flow_source(schedule("0 */2 * * *")))
    sched = Scheduler(engine)
    sched.tick_once(utc(2024, 5, 1, 9, 30))
    sched.tick_once(utc(2024, 5, 1, 10, 0, 1))
    before = list_triggers(engine.repo, NS)[0]
    # an edit elsewhere in the flow keeps the clock (even across downtime: 12:00 is still owed)
    assert deploy(engine, flow_source(schedule("0 */2 * * *"), extra="description: v2\n")) == 2
    sched.tick_once(utc(2024, 5, 1, 12, 30))
    after = list_triggers(engine.repo, NS)[0]
    assert after.flow_revision == 2
    assert fired(engine) == [utc(2024, 5, 1, 10), utc(2024, 5, 1, 12)]
    assert before.last_date == utc(2024, 5, 1, 10) and after.last_date == utc(2024, 5, 1, 12)
    # a cron edit restarts from now: first tick after 12:40 of "15 * * * *" is 13:15
    deploy(engine, flow_source(schedule("15 * * * *")))
    sched.tick_once(utc(2024, 5, 1, 12, 40))
    assert list_triggers(engine.repo, NS)[0].next_date == utc(2024, 5, 1, 13, 15)
    sched.tick_once(utc(2024, 5, 1, 13, 15, 1))
    assert fired(engine)[-1] == utc(2024, 5, 1, 13, 15)
    # a zone edit restarts from now too
    deploy(engine, flow_source(schedule("15 * * * *", more="timezone: Asia/Kolkata")))
    sched.tick_once(utc(2024, 5, 1, 13, 20))
    assert list_triggers(engine.repo, NS)[0].next_date == utc(2024, 5, 1, 13, 45)


def test_renamed_trigger_is_a_new_trigger(engine: Engine) -> None:
    deploy(engine, flow_source(schedule("0 * * * *", tid="old")))
    sched = Scheduler(engine)
    sched.tick_once(utc(2024, 5, 1, 9, 30))
    deploy(engine, flow_source(schedule("0 * * * *", tid="new")))
    # the old trigger had 10:00..12:00 owed; the new one starts from now (12:30)
    sched.tick_once(utc(2024, 5, 1, 12, 30))
    assert [r.trigger_id for r in list_triggers(engine.repo, NS)] == ["new"]
    assert fired(engine) == []
    sched.tick_once(utc(2024, 5, 1, 13, 0, 1))
    [execution] = engine.repo.list_executions(namespace=NS)
    assert execution.trigger_id == "new" and execution.trigger_date == utc(2024, 5, 1, 13)


def test_deleted_flow_stops_firing(engine: Engine) -> None:
    deploy(engine, flow_source(schedule("0 * * * *")))
    sched = Scheduler(engine)
    sched.tick_once(utc(2024, 5, 1, 9, 30))
    sched.tick_once(utc(2024, 5, 1, 10, 0, 1))
    assert engine.repo.delete_flow(NS, "f")
    walk(sched, utc(2024, 5, 1, 10, 30), utc(2024, 5, 1, 13), timedelta(minutes=30))
    assert fired(engine) == [utc(2024, 5, 1, 10)]
    assert list_triggers(engine.repo, NS) == []
    # deployed again: a new flow, from now
    deploy(engine, flow_source(schedule("0 * * * *")))
    sched.tick_once(utc(2024, 5, 1, 13, 30))
    sched.tick_once(utc(2024, 5, 1, 14, 0, 1))
    assert fired(engine) == [utc(2024, 5, 1, 10), utc(2024, 5, 1, 14)]


def test_a_stored_flow_that_no_longer_parses_fires_nothing_and_blocks_nothing(
    engine: Engine,
) -> None:
    # stored behind the validator's back (as by an older version with other rules)
    bad = flow_source(schedule("0 * * * *", more="inputs: {nope: 1}"), flow_id="bad")
    engine.repo.deploy_flow(NS, "bad", bad)
    deploy(engine, flow_source(schedule("0 * * * *"), flow_id="good"))
    sched = Scheduler(engine)
    sched.tick_once(utc(2024, 5, 1, 9, 30))
    sched.tick_once(utc(2024, 5, 1, 10, 0, 1))
    assert fired(engine, "bad") == []
    assert fired(engine, "good") == [utc(2024, 5, 1, 10)]


# -- exactly once --------------------------------------------------------------------------
def test_two_schedulers_in_parallel_fire_each_tick_once(engine: Engine) -> None:
    for i in range(5):
        deploy(engine, flow_source(schedule("* * * * *"), flow_id=f"p{i}"))
    schedulers = [Scheduler(engine), Scheduler(engine)]
    start = utc(2024, 5, 1, 9, 0, 30)
    for s in schedulers:
        s.tick_once(start)
    created: list[str] = []
    errors: list[BaseException] = []

    def run(s: Scheduler) -> None:
        try:
            for minute in range(1, 31):
                created.extend(s.tick_once(start + timedelta(minutes=minute)).created)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in schedulers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # each pass reports only what it inserted: together, every tick once
    assert len(created) == len(set(created)) == 5 * 30
    for i in range(5):
        ticks = fired(engine, f"p{i}")
        assert sorted(ticks) == [utc(2024, 5, 1, 9, m) for m in range(1, 31)]


def test_the_unique_index_turns_a_second_insert_into_a_no_op(engine: Engine) -> None:
    deploy(engine, flow_source(schedule("0 * * * *")))
    store = SchedulingStore(engine.repo)

    def row(execution_id: str) -> NewExecution:
        tick = utc(2024, 5, 1, 10)
        return NewExecution(
            execution_id, NS, "f", 1, "CREATED", {}, {}, {"date": tick.isoformat()}, "s", tick
        )

    with store.transaction() as conn:
        assert store.insert_scheduled(conn, [row("first")]) == ["first"]
    with store.transaction() as conn:
        assert store.insert_scheduled(conn, [row("second")]) == []
    assert [e.id for e in engine.repo.list_executions(namespace=NS)] == ["first"]


def test_late_maximum_delay_drops_ticks_that_are_too_late(engine: Engine) -> None:
    deploy(engine, flow_source(schedule("*/10 * * * *", more="lateMaximumDelay: PT25M")))
    sched = Scheduler(engine)
    sched.tick_once(utc(2024, 5, 1, 9, 55))
    # down until 11:05 (ALL): of 10:00 .. 11:00 only the ticks at most 25 minutes late run
    sched.tick_once(utc(2024, 5, 1, 11, 5))
    assert fired(engine) == [utc(2024, 5, 1, 10, 40), utc(2024, 5, 1, 10, 50), utc(2024, 5, 1, 11)]
