"""The scheduler: fires the Schedule triggers of deployed flows, exactly once per tick.

One pass (``Scheduler.tick_once``) does two things:

1. **Sync** the ``triggers`` table with the latest revision of every deployed flow. A new
   trigger starts from now (its first tick after now); an edited flow keeps its trigger's clock
   unless the trigger's cron, zone or seconds mode changed (then it restarts from now) or its id
   changed (a new trigger). A deleted flow or a removed trigger loses its row; a disabled flow or
   trigger keeps its row but does not fire, and restarts from now when enabled again.
2. **Fire** due triggers. Each due row is locked with ``FOR UPDATE SKIP LOCKED``; its ticks'
   executions are inserted with ``scheduled = true`` and its ``next_date``/``last_date`` moved in
   the same transaction. A second scheduler skips locked rows, and the partial unique index
   ``executions_one_per_tick`` makes any duplicate insert a no-op. A scheduler killed mid-way
   rolls back, so the tick stays due and the other scheduler fires it.

Ticks late by more than ``grace`` count as missed (the scheduler was down) and follow the
trigger's ``recoverMissedSchedules``: ALL fires every one, LAST the newest, NONE none. A tick
within ``grace`` fires whatever the policy. ``lateMaximumDelay`` drops any tick later than it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from flowhawk.engine.ticks import CronSchedule, missed_ticks
from flowhawk.errors import DatabaseError, FlowhawkError
from flowhawk.flow.inputs import resolve_inputs, secret_inputs
from flowhawk.store.ids import new_id
from flowhawk.store.records import ExecutionRecord
from flowhawk.store.scheduling import DesiredTrigger, NewExecution, SchedulingStore, TriggerRecord
from flowhawk.util.durations import parse_duration

if TYPE_CHECKING:
    from flowhawk.engine.service import Engine
    from flowhawk.flow.model import Flow, ScheduleTrigger
    from flowhawk.store.repository import Repository

log = logging.getLogger("flowhawk.scheduler")

#: most ticks one trigger fires in one pass (the rest follow in the next passes)
MAX_TICKS_PER_PASS = 500
#: most due triggers locked in one transaction
MAX_TRIGGERS_PER_PASS = 100


def schedule_of(trigger: ScheduleTrigger | TriggerRecord) -> CronSchedule:
    """The tick arithmetic of a flow's trigger or of a stored trigger row."""
    if isinstance(trigger, TriggerRecord):
        return CronSchedule(trigger.cron, trigger.timezone, trigger.with_seconds)
    return CronSchedule(trigger.cron, trigger.timezone or "UTC", bool(trigger.withSeconds))


def tick_variables(
    schedule: CronSchedule,
    trigger_id: str,
    tick: datetime,
    *,
    previous: datetime | None = None,
    following: datetime | None = None,
) -> dict[str, Any]:
    """``trigger.{date,next,previous,id}`` of a tick, in the trigger's zone.

    ``previous``/``following`` may be passed when known (a backfill plan knows its neighbours),
    which saves walking the cron again.
    """
    local = tick.astimezone(schedule.tz)
    before = previous if previous is not None else schedule.previous_before(local)
    after = following if following is not None else schedule.next_after(local)
    return {
        "id": trigger_id,
        "date": local.isoformat(),
        "next": after.astimezone(schedule.tz).isoformat(),
        "previous": before.astimezone(schedule.tz).isoformat(),
    }


def scheduled_inputs(flow: Flow, given: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Resolved inputs as stored on an execution (secrets masked), or the error that stops it."""
    try:
        resolved = resolve_inputs(flow, given)
    except FlowhawkError as exc:
        return {}, str(exc)
    secrets = secret_inputs(flow)
    return {
        k: ("******" if k in secrets and v is not None else v) for k, v in resolved.items()
    }, None


def _late_seconds(trigger: ScheduleTrigger) -> float | None:
    if not trigger.lateMaximumDelay:
        return None
    return parse_duration(trigger.lateMaximumDelay).total_seconds()


def desired_triggers(flow: Flow, revision: int, now: datetime) -> list[DesiredTrigger]:
    """The trigger rows a flow revision asks for, each starting from ``now``."""
    result = []
    for trigger in flow.triggers or []:
        schedule = schedule_of(trigger)
        active = not flow.disabled and not trigger.disabled
        result.append(
            DesiredTrigger(
                namespace=flow.namespace,
                flow_id=flow.id,
                trigger_id=trigger.id,
                cron=trigger.cron,
                timezone=schedule.timezone,
                with_seconds=bool(trigger.withSeconds),
                recover=trigger.recoverMissedSchedules,
                stop_after=[str(s) for s in trigger.stopAfter],
                late_max_seconds=_late_seconds(trigger),
                active=active,
                flow_revision=revision,
                next_date=schedule.next_after(now),
            )
        )
    return result


def due_ticks(
    record: TriggerRecord, schedule: CronSchedule, now: datetime, grace: timedelta
) -> list[datetime]:
    """The ticks of a due trigger to fire now, in order, per its missed-schedule policy."""
    if record.next_date is None or record.next_date > now:
        return []
    # every tick >= next_date is owed; missed_ticks counts ticks strictly after its reference
    reference = record.next_date - timedelta(microseconds=1)
    cutoff = now - grace
    late: list[datetime] = []
    if cutoff >= record.next_date:
        late = missed_ticks(schedule, reference, cutoff, record.recover)
        reference = max(reference, cutoff)
    on_time = [t for t in schedule.ticks_between(record.next_date, now) if t > reference]
    ticks = late + on_time
    if record.late_max_seconds is not None:
        oldest = now - timedelta(seconds=record.late_max_seconds)
        ticks = [t for t in ticks if t >= oldest]
    return ticks


@dataclass
class PassResult:
    """What one pass did: executions created, ticks another scheduler already had."""

    created: list[str]
    duplicates: int = 0


class Scheduler:
    """Fires Schedule triggers; run several at once safely."""

    def __init__(
        self,
        engine: Engine,
        clock: Callable[[], datetime] | None = None,
        interval: float = 1.0,
        *,
        grace: timedelta = timedelta(seconds=60),
        resync_every: float = 30.0,
    ) -> None:
        self.engine = engine
        self.repo: Repository = engine.repo
        self.store = SchedulingStore(engine.repo)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.interval = interval
        self.grace = grace
        self.resync_every = resync_every
        self._synced: dict[tuple[str, str], tuple[int, bool]] = {}
        self._flows: dict[tuple[str, str, int], Flow | None] = {}
        self._last_sync = 0.0

    # -- one pass ---------------------------------------------------------------------
    def tick_once(self, now: datetime | None = None) -> PassResult:
        """Sync the triggers table, then fire what is due at ``now``."""
        now = now or self.clock()
        self.sync(now)
        return self.fire_due(now)

    def sync(self, now: datetime, *, force: bool = False) -> None:
        """Bring trigger rows in line with the latest flow revisions (only flows that changed)."""
        latest = self.store.latest_flow_revisions()
        for key, (revision, deleted) in latest.items():
            if not force and self._synced.get(key) == (revision, deleted):
                continue
            namespace, flow_id = key
            if deleted:
                self.store.delete_flow_triggers(namespace, flow_id)
            else:
                flow = self._flow(namespace, flow_id, revision)
                if flow is None:
                    self._synced[key] = (revision, deleted)
                    continue
                self.store.sync_flow_triggers(
                    namespace, flow_id, desired_triggers(flow, revision, now)
                )
            self._synced[key] = (revision, deleted)
        self._last_sync = time.monotonic()

    def _flow(self, namespace: str, flow_id: str, revision: int) -> Flow | None:
        """A flow revision, parsed once; None (and a log line) when it no longer parses."""
        key = (namespace, flow_id, revision)
        if key not in self._flows:
            record = self.repo.get_flow(namespace, flow_id, revision)
            flow: Flow | None = None
            if record is not None and not record.deleted:
                try:
                    flow = self.engine.parse(record.source, f"{namespace}/{flow_id}")
                    flow.revision = revision
                except FlowhawkError as exc:
                    log.error("flow %s/%s revision %s: %s", namespace, flow_id, revision, exc)
            self._flows[key] = flow
        return self._flows[key]

    def fire_due(self, now: datetime) -> PassResult:
        """Fire every due trigger: executions and the trigger's new clock in one transaction."""
        result = PassResult(created=[])
        while True:
            with self.store.transaction() as conn:
                due = self.store.lock_due_triggers(conn, now, MAX_TRIGGERS_PER_PASS)
                for record in due:
                    self._fire(conn, record, now, result)
            if len(due) < MAX_TRIGGERS_PER_PASS:
                return result

    def _fire(
        self, conn: psycopg.Connection, record: TriggerRecord, now: datetime, result: PassResult
    ) -> None:
        flow = self._flow(record.namespace, record.flow_id, record.flow_revision)
        trigger = None
        if flow is not None:
            trigger = next((t for t in flow.triggers if t.id == record.trigger_id), None)
        try:
            schedule = schedule_of(record)
        except ValueError as exc:
            log.error(
                "trigger %s/%s.%s: %s", record.namespace, record.flow_id, record.trigger_id, exc
            )
            self.store.move_trigger(conn, record.key, None, None)
            return
        ticks = due_ticks(record, schedule, now, self.grace) if trigger is not None else []
        more = len(ticks) > MAX_TICKS_PER_PASS
        ticks = ticks[:MAX_TICKS_PER_PASS]
        rows = []
        if flow is not None and trigger is not None:
            rows = [self._execution(flow, trigger, schedule, tick) for tick in ticks]
        inserted = self.store.insert_scheduled(conn, rows)
        result.duplicates += len(rows) - len(inserted)
        result.created.extend(inserted)
        if more:
            next_date = schedule.next_after(ticks[-1])
        else:
            next_date = schedule.next_after(max(now, record.next_date or now))
        self.store.move_trigger(conn, record.key, next_date, ticks[-1] if ticks else None)

    def _execution(
        self, flow: Flow, trigger: ScheduleTrigger, schedule: CronSchedule, tick: datetime
    ) -> NewExecution:
        given = dict(trigger.inputs or {})
        inputs, error = scheduled_inputs(flow, given)
        labels = {**(flow.labels or {}), **{str(k): str(v) for k, v in trigger.labels.items()}}
        return NewExecution(
            id=new_id(),
            namespace=flow.namespace,
            flow_id=flow.id,
            flow_revision=flow.revision or 1,
            state="FAILED" if error else "CREATED",
            labels=labels,
            inputs=inputs,
            trigger=tick_variables(schedule, trigger.id, tick),
            trigger_id=trigger.id,
            trigger_date=tick,
            error=f"trigger {trigger.id}: {error}" if error else None,
        )

    # -- the loop ---------------------------------------------------------------------
    def run(self, stop_event: threading.Event) -> None:
        """Pass after pass until ``stop_event`` is set.

        Wakes when the next tick is due, when a flow is deployed or deleted (LISTEN
        ``flowhawk_flows``), and at least every ``interval`` seconds. A lost database costs
        a pause: the pass is retried after a short sleep.
        """
        listener: psycopg.Connection | None = None
        force_sync = True
        while not stop_event.is_set():
            try:
                if listener is None:
                    listener = psycopg.connect(self.repo.url, autocommit=True)
                    listener.execute("LISTEN flowhawk_flows")
                    force_sync = True
                now = self.clock()
                if force_sync or time.monotonic() - self._last_sync > self.resync_every:
                    self.sync(now, force=force_sync)
                    force_sync = False
                else:
                    self.sync(now)
                self.fire_due(now)
                wait = self._wait_seconds()
                for _ in listener.notifies(timeout=wait, stop_after=1):
                    force_sync = True
            except (psycopg.Error, DatabaseError) as exc:
                log.warning("scheduler: database unavailable, retrying: %s", exc)
                if listener is not None:
                    listener.close()
                listener = None
                stop_event.wait(min(5.0, max(self.interval, 0.5)))
            except Exception:  # a bug in one pass must not stop scheduling for good
                log.exception("scheduler pass failed; retrying")
                stop_event.wait(max(self.interval, 0.5))
        if listener is not None:
            listener.close()

    def _wait_seconds(self) -> float:
        upcoming = self.store.next_due_date()
        if upcoming is None:
            return self.interval
        delay = (upcoming - self.clock()).total_seconds()
        return max(0.01, min(self.interval, delay))


# -- stopAfter and the API of later issues -------------------------------------------------
def apply_stop_after(repo: Repository, execution: ExecutionRecord | str) -> bool:
    """Called by a worker when an execution ends: disables its trigger per ``stopAfter``.

    Only executions the scheduler created count (not backfills, not manual runs). Returns
    whether a trigger was disabled.
    """
    execution_id = execution if isinstance(execution, str) else execution.id
    disabled = SchedulingStore(repo).disable_after(execution_id)
    if disabled:
        log.info("trigger %s/%s.%s disabled by stopAfter", *disabled)
    return disabled is not None


def list_triggers(
    repo: Repository, namespace: str | None = None, flow_id: str | None = None
) -> list[TriggerRecord]:
    """Every trigger row with its last and next tick (``next_date`` is None when disabled)."""
    return SchedulingStore(repo).list_triggers(namespace, flow_id)


def set_trigger_enabled(
    repo: Repository,
    namespace: str,
    flow_id: str,
    trigger_id: str,
    enabled: bool,
    *,
    now: datetime | None = None,
    reason: str = "disabled through the API",
) -> TriggerRecord:
    """Switch a trigger on or off. Switched on again, it restarts from ``now`` (no catch-up)."""
    store = SchedulingStore(repo)
    record = store.get_trigger(namespace, flow_id, trigger_id)
    if record is None:
        raise FlowhawkError(f"flow {namespace}/{flow_id} has no Schedule trigger `{trigger_id}`")
    next_date = None
    if enabled:
        next_date = schedule_of(record).next_after(now or datetime.now(UTC))
    store.set_trigger_disabled(record.key, not enabled, reason=reason, next_date=next_date)
    found = store.get_trigger(namespace, flow_id, trigger_id)
    assert found is not None
    return found
