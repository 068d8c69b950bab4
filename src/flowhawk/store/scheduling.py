"""Every query of the scheduler and of backfills: trigger rows, scheduled executions, backfills.

The scheduler fires a trigger inside one transaction: it locks the due ``triggers`` row
(``FOR UPDATE SKIP LOCKED``), inserts the tick's execution with ``scheduled = true`` (the
partial unique index ``executions_one_per_tick`` turns a second insert into a no-op) and moves
``next_date``/``last_date``. Either all of it is committed or none of it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from flowhawk.store.records import TERMINAL_STATES
from flowhawk.store.repository import Repository
from flowhawk.store.sql import Where

#: states in which an execution is still under way
UNDER_WAY = ("CREATED", "QUEUED", "RUNNING", "PAUSED", "KILLING", "RETRYING", "RESTARTED")

_TRIGGER_COLUMNS = (
    "namespace, flow_id, trigger_id, cron, timezone, with_seconds, recover, stop_after,"
    " late_max_seconds, active, flow_revision, next_date, last_date, disabled, disabled_reason,"
    " updated_at"
)
_BACKFILL_COLUMNS = (
    "id, namespace, flow_id, trigger_id, flow_revision, timezone, start_date, end_date,"
    " parallelism, labels, inputs, only_missing, state, ticks, skipped, created_at, updated_at,"
    " ended_at"
)
_EXECUTION_INSERT_COLUMNS = (
    "id",
    "namespace",
    "flow_id",
    "flow_revision",
    "state",
    "labels",
    "inputs",
    "trigger",
    "trigger_id",
    "trigger_date",
    "original_id",
    "backfill_id",
    "error",
    "scheduled",
)


@dataclass
class TriggerRecord:
    """Where one Schedule trigger's clock stands."""

    namespace: str
    flow_id: str
    trigger_id: str
    cron: str
    timezone: str
    with_seconds: bool = False
    recover: str = "ALL"
    stop_after: list[str] = field(default_factory=list)
    late_max_seconds: float | None = None
    active: bool = True
    flow_revision: int = 1
    next_date: datetime | None = None
    last_date: datetime | None = None
    disabled: bool = False
    disabled_reason: str | None = None
    updated_at: datetime | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.namespace, self.flow_id, self.trigger_id)

    @property
    def enabled(self) -> bool:
        """Whether it fires: active in its definition and not switched off."""
        return self.active and not self.disabled

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "flowId": self.flow_id,
            "triggerId": self.trigger_id,
            "cron": self.cron,
            "timezone": self.timezone,
            "withSeconds": self.with_seconds,
            "recoverMissedSchedules": self.recover,
            "stopAfter": list(self.stop_after),
            "enabled": self.enabled,
            "disabledInFlow": not self.active,
            "disabled": self.disabled,
            "disabledReason": self.disabled_reason,
            "lastDate": self.last_date.isoformat() if self.last_date else None,
            "nextDate": self.next_date.isoformat() if self.next_date and self.enabled else None,
            "flowRevision": self.flow_revision,
        }


@dataclass
class DesiredTrigger:
    """A trigger as the latest revision of its flow defines it, with its first tick from now."""

    namespace: str
    flow_id: str
    trigger_id: str
    cron: str
    timezone: str
    with_seconds: bool
    recover: str
    stop_after: list[str]
    late_max_seconds: float | None
    active: bool
    flow_revision: int
    next_date: datetime | None


@dataclass
class BackfillRecord:
    id: str
    namespace: str
    flow_id: str
    trigger_id: str
    flow_revision: int
    timezone: str
    start_date: datetime
    end_date: datetime
    parallelism: int
    labels: dict[str, str]
    inputs: dict[str, Any]
    only_missing: bool
    state: str
    ticks: int
    skipped: int
    created_at: datetime | None = None
    updated_at: datetime | None = None
    ended_at: datetime | None = None


@dataclass
class Progress:
    """Where a backfill's executions stand.

    ``pending`` are created and not yet picked up (waiting for the backfill's parallelism),
    ``queued`` wait for a slot of the flow's concurrency limit, ``done`` ended SUCCESS or
    WARNING, ``failed`` FAILED or KILLED.
    """

    total: int = 0
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    running: int = 0
    queued: int = 0
    pending: int = 0

    @property
    def finished(self) -> bool:
        return self.running + self.queued + self.pending == 0

    def to_json(self) -> dict[str, int]:
        return {
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "running": self.running,
            "queued": self.queued,
            "pending": self.pending,
        }


@dataclass
class NewExecution:
    """One row for ``insert_executions``."""

    id: str
    namespace: str
    flow_id: str
    flow_revision: int
    state: str
    labels: dict[str, str]
    inputs: dict[str, Any]
    trigger: dict[str, Any]
    trigger_id: str
    trigger_date: datetime
    backfill_id: str | None = None
    error: str | None = None

    def row(self, scheduled: bool) -> tuple[Any, ...]:
        return (
            self.id,
            self.namespace,
            self.flow_id,
            self.flow_revision,
            self.state,
            Jsonb(self.labels),
            Jsonb(self.inputs),
            Jsonb(self.trigger),
            self.trigger_id,
            self.trigger_date,
            self.id,
            self.backfill_id,
            self.error,
            scheduled,
        )


class SchedulingStore:
    """SQL for triggers and backfills over the lead's ``Repository`` connection pool."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        with self.repo.conn() as conn, conn.transaction():
            yield conn

    # -- flows ------------------------------------------------------------------------
    def latest_flow_revisions(self) -> dict[tuple[str, str], tuple[int, bool]]:
        """(namespace, id) -> (latest revision, deleted) of every flow ever deployed."""
        with self.repo.conn() as conn:
            rows = conn.execute(
                "SELECT DISTINCT ON (namespace, id) namespace, id, revision, deleted FROM flows"
                " ORDER BY namespace, id, revision DESC"
            ).fetchall()
        return {(r[0], r[1]): (r[2], r[3]) for r in rows}

    # -- triggers ---------------------------------------------------------------------
    def list_triggers(
        self, namespace: str | None = None, flow_id: str | None = None
    ) -> list[TriggerRecord]:
        where = _flow_filter(namespace, flow_id)
        sql = f"SELECT {_TRIGGER_COLUMNS} FROM triggers{where.sql()}"
        sql += " ORDER BY namespace, flow_id, trigger_id"
        with self.repo.conn() as conn:
            rows = conn.cursor(row_factory=dict_row).execute(sql, where.params).fetchall()
        return [TriggerRecord(**r) for r in rows]

    def get_trigger(self, namespace: str, flow_id: str, trigger_id: str) -> TriggerRecord | None:
        with self.repo.conn() as conn:
            row = (
                conn.cursor(row_factory=dict_row)
                .execute(
                    f"SELECT {_TRIGGER_COLUMNS} FROM triggers"
                    " WHERE namespace = %s AND flow_id = %s AND trigger_id = %s",
                    (namespace, flow_id, trigger_id),
                )
                .fetchone()
            )
        return TriggerRecord(**row) if row else None

    def sync_flow_triggers(
        self, namespace: str, flow_id: str, desired: Sequence[DesiredTrigger]
    ) -> None:
        """Make the trigger rows of one flow match its latest revision.

        A row keeps its clock (``next_date``/``last_date``) unless its cron, zone or seconds
        mode changed, or it becomes active again: then it restarts from ``desired.next_date``
        (the first tick after now). Rows of triggers the flow no longer has are deleted.
        """
        with self.transaction() as conn:
            conn.execute(
                "DELETE FROM triggers WHERE namespace = %s AND flow_id = %s"
                " AND NOT (trigger_id = ANY(%s))",
                (namespace, flow_id, [d.trigger_id for d in desired]),
            )
            for d in desired:
                conn.execute(
                    "INSERT INTO triggers (namespace, flow_id, trigger_id, cron, timezone,"
                    " with_seconds, recover, stop_after, late_max_seconds, active, flow_revision,"
                    " next_date) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (namespace, flow_id, trigger_id) DO UPDATE SET"
                    " next_date = CASE WHEN triggers.cron IS DISTINCT FROM EXCLUDED.cron"
                    "   OR triggers.timezone IS DISTINCT FROM EXCLUDED.timezone"
                    "   OR triggers.with_seconds IS DISTINCT FROM EXCLUDED.with_seconds"
                    "   OR (NOT triggers.active AND EXCLUDED.active)"
                    "   THEN EXCLUDED.next_date ELSE triggers.next_date END,"
                    " cron = EXCLUDED.cron, timezone = EXCLUDED.timezone,"
                    " with_seconds = EXCLUDED.with_seconds, recover = EXCLUDED.recover,"
                    " stop_after = EXCLUDED.stop_after,"
                    " late_max_seconds = EXCLUDED.late_max_seconds, active = EXCLUDED.active,"
                    " flow_revision = EXCLUDED.flow_revision, updated_at = now()"
                    " WHERE (triggers.cron, triggers.timezone, triggers.with_seconds,"
                    "  triggers.recover, triggers.stop_after, triggers.late_max_seconds,"
                    "  triggers.active, triggers.flow_revision) IS DISTINCT FROM"
                    " (EXCLUDED.cron, EXCLUDED.timezone, EXCLUDED.with_seconds, EXCLUDED.recover,"
                    "  EXCLUDED.stop_after, EXCLUDED.late_max_seconds, EXCLUDED.active,"
                    "  EXCLUDED.flow_revision)",
                    (
                        d.namespace,
                        d.flow_id,
                        d.trigger_id,
                        d.cron,
                        d.timezone,
                        d.with_seconds,
                        d.recover,
                        list(d.stop_after),
                        d.late_max_seconds,
                        d.active,
                        d.flow_revision,
                        d.next_date,
                    ),
                )

    def delete_flow_triggers(self, namespace: str, flow_id: str) -> None:
        with self.repo.conn() as conn:
            conn.execute(
                "DELETE FROM triggers WHERE namespace = %s AND flow_id = %s", (namespace, flow_id)
            )

    def lock_due_triggers(
        self, conn: psycopg.Connection, now: datetime, limit: int
    ) -> list[TriggerRecord]:
        """Due rows no other scheduler holds, locked until ``conn``'s transaction ends."""
        rows = (
            conn.cursor(row_factory=dict_row)
            .execute(
                f"SELECT {_TRIGGER_COLUMNS} FROM triggers"
                " WHERE NOT disabled AND active AND next_date <= %s"
                " ORDER BY next_date LIMIT %s FOR UPDATE SKIP LOCKED",
                (now, limit),
            )
            .fetchall()
        )
        return [TriggerRecord(**r) for r in rows]

    def next_due_date(self) -> datetime | None:
        with self.repo.conn() as conn:
            row = conn.execute(
                "SELECT min(next_date) FROM triggers WHERE NOT disabled AND active"
            ).fetchone()
        return row[0] if row else None

    def move_trigger(
        self,
        conn: psycopg.Connection,
        key: tuple[str, str, str],
        next_date: datetime | None,
        last_date: datetime | None,
    ) -> None:
        conn.execute(
            "UPDATE triggers SET next_date = %s, last_date = COALESCE(%s, last_date),"
            " updated_at = now() WHERE namespace = %s AND flow_id = %s AND trigger_id = %s",
            (next_date, last_date, *key),
        )

    def set_trigger_disabled(
        self,
        key: tuple[str, str, str],
        disabled: bool,
        *,
        reason: str | None = None,
        next_date: datetime | None = None,
    ) -> bool:
        """Switch a trigger off (with a reason) or on again (restarting from ``next_date``)."""
        with self.repo.conn() as conn:
            if disabled:
                cur = conn.execute(
                    "UPDATE triggers SET disabled = true, disabled_reason = %s, updated_at = now()"
                    " WHERE namespace = %s AND flow_id = %s AND trigger_id = %s",
                    (reason, *key),
                )
            else:
                cur = conn.execute(
                    "UPDATE triggers SET disabled = false, disabled_reason = NULL,"
                    " next_date = CASE WHEN disabled THEN %s ELSE next_date END,"
                    " updated_at = now()"
                    " WHERE namespace = %s AND flow_id = %s AND trigger_id = %s",
                    (next_date, *key),
                )
            conn.execute("SELECT pg_notify('flowhawk_flows', %s)", (f"{key[0]}/{key[1]}",))
            return cur.rowcount > 0

    def disable_after(self, execution_id: str) -> tuple[str, str, str] | None:
        """stopAfter: switch off the trigger of a scheduled execution that ended in a listed state.

        One statement, so two workers ending executions of the same trigger cannot interfere.
        """
        with self.repo.conn() as conn:
            row = conn.execute(
                "UPDATE triggers t SET disabled = true, updated_at = now(),"
                " disabled_reason = 'stopAfter: execution ' || e.id || ' ended ' || e.state"
                " FROM executions e WHERE e.id = %s AND e.scheduled"
                " AND t.namespace = e.namespace AND t.flow_id = e.flow_id"
                " AND t.trigger_id = e.trigger_id AND e.state = ANY(t.stop_after)"
                " AND NOT t.disabled"
                " RETURNING t.namespace, t.flow_id, t.trigger_id",
                (execution_id,),
            ).fetchone()
        return (row[0], row[1], row[2]) if row else None

    # -- executions -------------------------------------------------------------------
    def insert_scheduled(self, conn: psycopg.Connection, rows: Sequence[NewExecution]) -> list[str]:
        """Insert the executions of live ticks; a tick that already has one is skipped.

        Returns the ids inserted (the others' ticks were taken by another scheduler).
        """
        if not rows:
            return []
        columns = ", ".join(_EXECUTION_INSERT_COLUMNS)
        one = "(" + ", ".join(["%s"] * len(_EXECUTION_INSERT_COLUMNS)) + ")"
        params = [value for row in rows for value in row.row(scheduled=True)]
        inserted = conn.execute(
            f"INSERT INTO executions ({columns}) VALUES {', '.join([one] * len(rows))}"
            " ON CONFLICT (namespace, flow_id, trigger_id, trigger_date) WHERE scheduled"
            " DO NOTHING RETURNING id",
            params,
        ).fetchall()
        if inserted:
            conn.execute(
                "SELECT pg_notify('flowhawk_executions', %s)", (f"{inserted[-1][0]}:CREATED",)
            )
        return [r[0] for r in inserted]

    def copy_executions(self, conn: psycopg.Connection, rows: Sequence[NewExecution]) -> None:
        """Bulk insert (COPY) in the given order, so that ``seq`` follows it."""
        columns = ", ".join(_EXECUTION_INSERT_COLUMNS)
        with conn.cursor().copy(f"COPY executions ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row.row(scheduled=False))
        if rows:
            conn.execute("SELECT pg_notify('flowhawk_executions', %s)", (f"{rows[0].id}:CREATED",))

    def tick_states(
        self, namespace: str, flow_id: str, trigger_id: str, ticks: Sequence[datetime]
    ) -> dict[datetime, list[str]]:
        """States of the executions of each tick (of this trigger, or of no trigger)."""
        if not ticks:
            return {}
        with self.repo.conn() as conn:
            rows = conn.execute(
                "SELECT trigger_date, state FROM executions"
                " WHERE namespace = %s AND flow_id = %s AND trigger_date = ANY(%s)"
                " AND (trigger_id = %s OR trigger_id IS NULL)",
                (namespace, flow_id, list(ticks), trigger_id),
            ).fetchall()
        found: dict[datetime, list[str]] = {}
        for when, state in rows:
            found.setdefault(when, []).append(state)
        return found

    # -- backfills --------------------------------------------------------------------
    def insert_backfill(self, conn: psycopg.Connection, backfill: BackfillRecord) -> None:
        conn.execute(
            "INSERT INTO backfills (id, namespace, flow_id, trigger_id, flow_revision, timezone,"
            " start_date, end_date, parallelism, labels, inputs, only_missing, state, ticks,"
            " skipped) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                backfill.id,
                backfill.namespace,
                backfill.flow_id,
                backfill.trigger_id,
                backfill.flow_revision,
                backfill.timezone,
                backfill.start_date,
                backfill.end_date,
                backfill.parallelism,
                Jsonb(backfill.labels),
                Jsonb(backfill.inputs),
                backfill.only_missing,
                backfill.state,
                backfill.ticks,
                backfill.skipped,
            ),
        )

    def get_backfill(self, backfill_id: str) -> BackfillRecord | None:
        with self.repo.conn() as conn:
            row = (
                conn.cursor(row_factory=dict_row)
                .execute(f"SELECT {_BACKFILL_COLUMNS} FROM backfills WHERE id = %s", (backfill_id,))
                .fetchone()
            )
        return BackfillRecord(**row) if row else None

    def list_backfills(
        self, namespace: str | None = None, flow_id: str | None = None, limit: int = 50
    ) -> list[BackfillRecord]:
        where = _flow_filter(namespace, flow_id)
        sql = f"SELECT {_BACKFILL_COLUMNS} FROM backfills{where.sql()}"
        sql += " ORDER BY created_at DESC, id DESC LIMIT %s"
        params = [*where.params, limit]
        with self.repo.conn() as conn:
            rows = conn.cursor(row_factory=dict_row).execute(sql, params).fetchall()
        return [BackfillRecord(**r) for r in rows]

    def progress(self, backfill_ids: Sequence[str]) -> dict[str, Progress]:
        """Counts of each backfill's executions by where they stand."""
        result = {backfill_id: Progress() for backfill_id in backfill_ids}
        if not result:
            return result
        with self.repo.conn() as conn:
            rows = conn.execute(
                "SELECT backfill_id, state, count(*) FROM executions"
                " WHERE backfill_id = ANY(%s) GROUP BY backfill_id, state",
                (list(result),),
            ).fetchall()
        for backfill_id, state, count in rows:
            p = result[backfill_id]
            p.total += count
            if state in ("SUCCESS", "WARNING"):
                p.done += count
            elif state in ("FAILED", "KILLED"):
                p.failed += count
            elif state == "CANCELLED":
                p.cancelled += count
            elif state == "CREATED":
                p.pending += count
            elif state == "QUEUED":
                p.queued += count
            else:
                p.running += count
        return result

    def set_backfill_state(
        self, backfill_id: str, state: str, *, only_from: Sequence[str] = ()
    ) -> bool:
        sql = "UPDATE backfills SET state = %s, updated_at = now()"
        params: list[Any] = [state]
        if state in ("SUCCESS", "FAILED", "CANCELLED"):
            sql += ", ended_at = COALESCE(ended_at, now())"
        sql += " WHERE id = %s"
        params.append(backfill_id)
        if only_from:
            sql += " AND state = ANY(%s)"
            params.append(list(only_from))
        with self.repo.conn() as conn:
            cur = conn.execute(sql, params)
            conn.execute(
                "SELECT pg_notify('flowhawk_executions', %s)", (f"backfill:{backfill_id}",)
            )
            return cur.rowcount > 0

    def cancel_backfill(self, backfill_id: str) -> int:
        """Mark it CANCELLED and cancel its executions that have not started; returns how many."""
        with self.transaction() as conn:
            conn.execute(
                "UPDATE backfills SET state = 'CANCELLED', updated_at = now(),"
                " ended_at = COALESCE(ended_at, now()) WHERE id = %s",
                (backfill_id,),
            )
            cur = conn.execute(
                "UPDATE executions SET state = 'CANCELLED', end_date = now(), updated_at = now()"
                " WHERE backfill_id = %s AND state IN ('CREATED', 'QUEUED')",
                (backfill_id,),
            )
            conn.execute(
                "SELECT pg_notify('flowhawk_executions', %s)", (f"backfill:{backfill_id}",)
            )
            return cur.rowcount

    def backfill_states(self, backfill_id: str) -> list[str]:
        """Every execution state of a backfill, in tick order."""
        with self.repo.conn() as conn:
            rows = conn.execute(
                "SELECT state FROM executions WHERE backfill_id = %s ORDER BY seq", (backfill_id,)
            ).fetchall()
        return [r[0] for r in rows]


__all__ = [
    "TERMINAL_STATES",
    "UNDER_WAY",
    "BackfillRecord",
    "DesiredTrigger",
    "NewExecution",
    "Progress",
    "SchedulingStore",
    "TriggerRecord",
]


def _flow_filter(namespace: str | None, flow_id: str | None) -> Where:
    return (
        Where()
        .add(bool(namespace), "namespace = %s", namespace)
        .add(bool(flow_id), "flow_id = %s", flow_id)
    )
