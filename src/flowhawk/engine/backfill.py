"""Backfills: replay one Schedule trigger's ticks between two dates.

A backfill is a ``backfills`` row plus one execution per tick, created up front in tick order
(state CREATED, ``backfill_id`` set, ``trigger.date`` = the tick). Workers run them, at most
``parallelism`` at once and never more than the flow's concurrency limit, and skip a backfill
that is PAUSED or CANCELLED. Progress is counted from the executions themselves.

``plan`` checks everything and writes nothing; ``create`` stores a plan in one transaction
(the executions with COPY, so 10,000 ticks take well under a second).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from flowhawk.engine.scheduler import schedule_of, scheduled_inputs, tick_variables
from flowhawk.engine.ticks import CronSchedule, parse_when, plan_backfill
from flowhawk.errors import FlowhawkError
from flowhawk.store.ids import new_id
from flowhawk.store.repository import retrying
from flowhawk.store.scheduling import (
    UNDER_WAY,
    BackfillRecord,
    NewExecution,
    Progress,
    SchedulingStore,
)

if TYPE_CHECKING:
    from flowhawk.engine.service import Engine
    from flowhawk.flow.model import Flow, ScheduleTrigger
    from flowhawk.store.repository import Repository

#: a guard against a range that would create an unreasonable number of executions
MAX_TICKS = 200_000
#: a tick with an execution in one of these states is not missing
NOT_MISSING = ("SUCCESS", "WARNING", *UNDER_WAY)


class BackfillError(FlowhawkError):
    """A backfill that cannot be planned or changed; nothing was created."""


@dataclass
class BackfillRequest:
    namespace: str
    flow_id: str
    start: str
    end: str
    trigger_id: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    parallelism: int = 1
    only_missing: bool = False


@dataclass
class BackfillPlan:
    """Everything a backfill will create, checked; ``ticks`` exclude the ``skipped`` ones."""

    flow: Flow
    revision: int
    trigger: ScheduleTrigger
    schedule: CronSchedule
    start: datetime
    end: datetime
    ticks: list[datetime]
    skipped: list[tuple[datetime, str]]
    inputs: dict[str, Any]
    labels: dict[str, str]
    parallelism: int
    only_missing: bool
    #: every tick of the range, skipped or not (neighbours give trigger.next / previous)
    all_ticks: list[datetime] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The dry-run listing: one line per tick, the tick first, in the trigger's zone."""
        ref = f"{self.flow.namespace}/{self.flow.id}"
        return [f"{tick.isoformat()} {ref} {self.trigger.id}" for tick in self.ticks]

    def summary(self) -> str:
        text = f"{len(self.ticks)} ticks"
        if self.skipped:
            text += f" ({len(self.skipped)} skipped: already done or under way)"
        return text


def _bound(text: str, schedule: CronSchedule, what: str) -> datetime | date:
    try:
        return parse_when(text, schedule.tz)
    except ValueError as exc:
        raise BackfillError(f"{what}: {exc}") from None


def _choose_trigger(flow: Flow, trigger_id: str | None) -> ScheduleTrigger:
    triggers = list(flow.triggers or [])
    ref = f"{flow.namespace}/{flow.id}"
    if not triggers:
        raise BackfillError(f"flow {ref} has no Schedule trigger to backfill")
    known = ", ".join(t.id for t in triggers)
    if trigger_id is None:
        if len(triggers) > 1:
            raise BackfillError(
                f"flow {ref} has {len(triggers)} Schedule triggers ({known}); choose one with"
                " --trigger"
            )
        return triggers[0]
    for trigger in triggers:
        if trigger.id == trigger_id:
            return trigger
    raise BackfillError(f"flow {ref} has no Schedule trigger `{trigger_id}` (known: {known})")


def plan_for_flow(
    repo: Repository, flow: Flow, revision: int, request: BackfillRequest
) -> BackfillPlan:
    """Check a request against a parsed flow and list its ticks; writes nothing."""
    if request.parallelism < 1:
        raise BackfillError(f"--parallelism must be at least 1, got {request.parallelism}")
    trigger = _choose_trigger(flow, request.trigger_id)
    try:
        schedule = schedule_of(trigger)
    except ValueError as exc:
        raise BackfillError(f"trigger `{trigger.id}`: {exc}") from None
    start = _bound(request.start, schedule, "--start")
    end = _bound(request.end, schedule, "--end")
    try:
        ticks = plan_backfill(schedule, start, end, max_ticks=MAX_TICKS)
    except ValueError as exc:
        raise BackfillError(str(exc)) from None
    lo = start if isinstance(start, datetime) else schedule.start_of_day(start)
    hi = end if isinstance(end, datetime) else schedule.end_of_day(end)
    given = {**(trigger.inputs or {}), **request.inputs}
    inputs, error = scheduled_inputs(flow, given)
    if error:
        raise BackfillError(error)
    labels = {
        **(flow.labels or {}),
        **{str(k): str(v) for k, v in (trigger.labels or {}).items()},
        **request.labels,
        "backfill": "true",
    }
    skipped: list[tuple[datetime, str]] = []
    kept = ticks
    if request.only_missing and ticks:
        states = SchedulingStore(repo).tick_states(flow.namespace, flow.id, trigger.id, ticks)
        kept = []
        for tick in ticks:
            blocking = [s for s in states.get(tick, []) if s in NOT_MISSING]
            if blocking:
                skipped.append((tick, blocking[0]))
            else:
                kept.append(tick)
    notes = []
    limit = flow.concurrency.limit if flow.concurrency else None
    if limit is not None and request.parallelism > limit:
        notes.append(
            f"parallelism {request.parallelism} is above the flow's concurrency limit {limit}:"
            f" at most {limit} of its executions run at once"
        )
    return BackfillPlan(
        flow=flow,
        revision=revision,
        trigger=trigger,
        schedule=schedule,
        start=lo.astimezone(schedule.tz),
        end=hi.astimezone(schedule.tz),
        ticks=kept,
        skipped=skipped,
        inputs=inputs,
        labels=labels,
        parallelism=request.parallelism,
        only_missing=request.only_missing,
        all_ticks=ticks,
        notes=notes,
    )


def plan(engine: Engine, request: BackfillRequest) -> BackfillPlan:
    """Load the deployed flow and plan the backfill (raises BackfillError / NotFound)."""
    if request.parallelism < 1:
        raise BackfillError(f"--parallelism must be at least 1, got {request.parallelism}")
    flow, revision = engine.flow(request.namespace, request.flow_id)
    return plan_for_flow(engine.repo, flow, revision, request)


def create(repo: Repository, planned: BackfillPlan) -> BackfillRecord | None:
    """Store the backfill and its executions, in tick order; None when there is no tick."""
    if not planned.ticks:
        return None
    flow, trigger, schedule = planned.flow, planned.trigger, planned.schedule
    backfill_id = new_id()
    every = planned.all_ticks or planned.ticks
    position = {tick: index for index, tick in enumerate(every)}
    rows = []
    for tick in planned.ticks:
        index = position[tick]
        rows.append(
            NewExecution(
                id=new_id(),
                namespace=flow.namespace,
                flow_id=flow.id,
                flow_revision=planned.revision,
                state="CREATED",
                labels=planned.labels,
                inputs=planned.inputs,
                trigger=tick_variables(
                    schedule,
                    trigger.id,
                    tick,
                    previous=every[index - 1] if index > 0 else None,
                    following=every[index + 1] if index + 1 < len(every) else None,
                ),
                trigger_id=trigger.id,
                trigger_date=tick,
                backfill_id=backfill_id,
            )
        )
    record = BackfillRecord(
        id=backfill_id,
        namespace=flow.namespace,
        flow_id=flow.id,
        trigger_id=trigger.id,
        flow_revision=planned.revision,
        timezone=schedule.timezone,
        start_date=planned.start,
        end_date=planned.end,
        parallelism=planned.parallelism,
        labels=planned.labels,
        inputs=planned.inputs,
        only_missing=planned.only_missing,
        state="RUNNING",
        ticks=len(rows),
        skipped=len(planned.skipped),
    )
    store = SchedulingStore(repo)
    with store.transaction() as conn:
        store.insert_backfill(conn, record)
        store.copy_executions(conn, rows)
    found = store.get_backfill(backfill_id)
    assert found is not None
    return found


# -- after creation ----------------------------------------------------------------------
def get(repo: Repository, backfill_id: str) -> BackfillRecord:
    found = SchedulingStore(repo).get_backfill(backfill_id)
    if found is None:
        raise BackfillError(f"backfill {backfill_id} not found")
    return found


def status(repo: Repository, backfill_id: str) -> tuple[BackfillRecord, Progress]:
    """The backfill and its progress; a backfill whose executions all ended is closed here
    (SUCCESS when every one ended SUCCESS or WARNING, FAILED otherwise)."""
    store = SchedulingStore(repo)
    record = get(repo, backfill_id)
    progress = store.progress([backfill_id])[backfill_id]
    return _close_if_finished(store, record, progress), progress


def list_with_progress(
    repo: Repository, namespace: str | None = None, flow_id: str | None = None, limit: int = 50
) -> list[tuple[BackfillRecord, Progress]]:
    store = SchedulingStore(repo)
    records = store.list_backfills(namespace, flow_id, limit)
    counts = store.progress([r.id for r in records])
    return [(_close_if_finished(store, r, counts[r.id]), counts[r.id]) for r in records]


def _close_if_finished(
    store: SchedulingStore, record: BackfillRecord, progress: Progress
) -> BackfillRecord:
    if record.state not in ("RUNNING", "PAUSED") or not progress.finished:
        return record
    state = "SUCCESS" if progress.done == progress.total else "FAILED"
    if store.set_backfill_state(record.id, state, only_from=("RUNNING", "PAUSED")):
        record.state = state
    return record


def pause(repo: Repository, backfill_id: str) -> BackfillRecord:
    """Workers start no more of its executions; running ones finish."""
    return _move(repo, backfill_id, "PAUSED", ("RUNNING",))


def resume(repo: Repository, backfill_id: str) -> BackfillRecord:
    return _move(repo, backfill_id, "RUNNING", ("PAUSED",))


def _move(
    repo: Repository, backfill_id: str, state: str, allowed: tuple[str, ...]
) -> BackfillRecord:
    record = get(repo, backfill_id)
    if record.state == state:
        return record
    if not SchedulingStore(repo).set_backfill_state(backfill_id, state, only_from=allowed):
        raise BackfillError(
            f"backfill {backfill_id} is {record.state}; only a {' or '.join(allowed)} backfill"
            f" can become {state}"
        )
    return get(repo, backfill_id)


def cancel(repo: Repository, backfill_id: str) -> int:
    """Cancel the executions that have not started (running ones finish); returns how many."""
    record = get(repo, backfill_id)
    if record.state in ("SUCCESS", "FAILED", "CANCELLED"):
        raise BackfillError(f"backfill {backfill_id} already ended {record.state}")
    return SchedulingStore(repo).cancel_backfill(backfill_id)


def wait(
    repo: Repository,
    backfill_id: str,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    poll: float = 0.3,
    timeout: float | None = None,
) -> Progress:
    """Block until every execution of the backfill has ended (or ``timeout`` seconds)."""
    store = SchedulingStore(repo)
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        progress = retrying(lambda: store.progress([backfill_id])[backfill_id])
        if on_progress is not None:
            on_progress(progress)
        if progress.finished:
            retrying(lambda: status(repo, backfill_id))
            return progress
        if deadline is not None and time.monotonic() > deadline:
            return progress
        time.sleep(poll)


def succeeded(progress: Progress) -> bool:
    """--wait's exit status: every execution ended SUCCESS or WARNING."""
    return progress.finished and progress.done == progress.total


def describe(record: BackfillRecord, progress: Progress) -> dict[str, Any]:
    """The JSON shape of ``backfill show``/``list``."""
    return {
        "id": record.id,
        "namespace": record.namespace,
        "flowId": record.flow_id,
        "triggerId": record.trigger_id,
        "state": record.state,
        "start": record.start_date.astimezone(_zone(record)).isoformat(),
        "end": record.end_date.astimezone(_zone(record)).isoformat(),
        "parallelism": record.parallelism,
        "onlyMissing": record.only_missing,
        "labels": record.labels,
        "inputs": record.inputs,
        "ticks": record.ticks,
        "skipped": record.skipped,
        "progress": progress.to_json(),
        "createdDate": record.created_at.isoformat() if record.created_at else None,
        "endedDate": record.ended_at.isoformat() if record.ended_at else None,
    }


def _zone(record: BackfillRecord) -> Any:
    from flowhawk.engine.ticks import resolve_zone

    try:
        return resolve_zone(record.timezone)
    except ValueError:
        return UTC
