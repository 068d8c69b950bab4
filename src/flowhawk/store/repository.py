"""All reads and writes of flowhawk's state, in one place (SQL lives here).

Engine and CLI talk to a ``Repository``; tasks never do.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from flowhawk.errors import DatabaseError
from flowhawk.store import migrate as migrations
from flowhawk.store.db import connect, describe
from flowhawk.store.ids import new_id
from flowhawk.store.records import (
    TERMINAL_STATES,
    ExecutionRecord,
    FlowRecord,
    LogRecord,
    TaskRunRecord,
)
from flowhawk.store.sql import Where

_EXECUTION_COLUMNS = (
    "id, namespace, flow_id, flow_revision, state, labels, inputs, outputs, trigger, trigger_id,"
    " trigger_date, parent_id, original_id, backfill_id, error, created_at, start_date, end_date,"
    " seq, worker_id, kill_requested"
)


#: how long an idempotent write waits for PostgreSQL to come back (a restart, a failover)
RETRY_SECONDS = 120.0

T = TypeVar("T")


def _execution(row: dict[str, Any]) -> ExecutionRecord:
    return ExecutionRecord(**row)


def _relax_commit(conn: psycopg.Connection) -> None:
    """Let this transaction commit without waiting for its WAL flush (3 ms a commit here).

    For the many small writes of a running execution (task runs, logs, RUNNING): the next
    durable commit, at the latest the execution's final state, flushes them too; only a crash
    of the PostgreSQL server itself can lose the last fraction of a second of them, and a lost
    intermediate write is redone when the execution is taken over."""
    conn.execute("SET LOCAL synchronous_commit = off")


def _closed_by_server(conn: psycopg.Connection) -> bool:
    """An idle pooled connection has nothing to read (none of them LISTENs); if its socket
    is readable, the server sent its goodbye (shutdown, restart, terminated backend)."""
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(readable)


def retrying(operation: Callable[[], T], seconds: float = RETRY_SECONDS) -> T:
    """Run an idempotent database operation, again and again while PostgreSQL is unreachable.

    A connection broken by a server restart fails once and is then dropped by the pool, so
    the next try gets a fresh one."""
    deadline = time.monotonic() + seconds
    delay = 0.1
    while True:
        try:
            return operation()
        except (DatabaseError, psycopg.OperationalError):
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(2.0, delay * 2)


class Repository:
    """A pool of connections to the state database and every query flowhawk makes."""

    def __init__(self, url: str, *, max_size: int = 8, migrate: bool = True) -> None:
        self.url = url
        if migrate:
            with connect(url) as conn:
                if not migrations.is_current(conn):
                    migrations.migrate(conn)
        else:
            connect(url).close()
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            kwargs={"autocommit": True},
            open=True,
            name="flowhawk",
            reconnect_timeout=300,
        )
        self._lock = threading.Lock()

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        return describe(self.url)

    @contextmanager
    def conn(self) -> Iterator[psycopg.Connection]:
        try:
            conn = self._checkout()
            try:
                with conn:
                    yield conn
            finally:
                self.pool.putconn(conn)
        except psycopg.OperationalError as exc:
            raise DatabaseError(f"PostgreSQL ({self.describe()}): {exc}") from exc

    def _checkout(self) -> psycopg.Connection:
        """A pooled connection, leaving out those the server closed while they sat idle (after
        a PostgreSQL restart), so that the first query after the restart does not fail."""
        for _ in range(self.pool.max_size):
            conn = self.pool.getconn(timeout=60)
            if not _closed_by_server(conn):
                return conn
            conn.close()
            self.pool.putconn(conn)
        return self.pool.getconn(timeout=60)

    # -- flows ----------------------------------------------------------------------
    def deploy_flow(self, namespace: str, flow_id: str, source: str) -> tuple[int, bool]:
        """Store a flow's source; a new revision only when it changed. -> (revision, changed)."""
        with self.conn() as conn, conn.transaction():
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"flow:{namespace}/{flow_id}",)
            )
            row = conn.execute(
                "SELECT revision, source, deleted FROM flows WHERE namespace = %s AND id = %s"
                " ORDER BY revision DESC LIMIT 1",
                (namespace, flow_id),
            ).fetchone()
            if row and row[1] == source and not row[2]:
                return row[0], False
            revision = (row[0] + 1) if row else 1
            conn.execute(
                "INSERT INTO flows (namespace, id, revision, source) VALUES (%s, %s, %s, %s)",
                (namespace, flow_id, revision, source),
            )
            conn.execute("SELECT pg_notify('flowhawk_flows', %s)", (f"{namespace}/{flow_id}",))
            return revision, True

    def get_flow(
        self, namespace: str, flow_id: str, revision: int | None = None
    ) -> FlowRecord | None:
        with self.conn() as conn:
            cur = conn.cursor(row_factory=dict_row)
            if revision is None:
                row = cur.execute(
                    "SELECT namespace, id, revision, source, deleted, created_at FROM flows"
                    " WHERE namespace = %s AND id = %s ORDER BY revision DESC LIMIT 1",
                    (namespace, flow_id),
                ).fetchone()
                if row and row["deleted"]:
                    return None
            else:
                row = cur.execute(
                    "SELECT namespace, id, revision, source, deleted, created_at FROM flows"
                    " WHERE namespace = %s AND id = %s AND revision = %s",
                    (namespace, flow_id, revision),
                ).fetchone()
        return FlowRecord(**row) if row else None

    def list_flows(self, namespace: str | None = None) -> list[FlowRecord]:
        sql = (
            "SELECT DISTINCT ON (namespace, id) namespace, id, revision, source, deleted, created_at"
            " FROM flows {where} ORDER BY namespace, id, revision DESC"
        )
        params: list[Any] = []
        where = ""
        if namespace:
            where = "WHERE namespace = %s OR namespace LIKE %s"
            params = [namespace, namespace + ".%"]
        with self.conn() as conn:
            rows = (
                conn.cursor(row_factory=dict_row)
                .execute(sql.format(where=where), params)
                .fetchall()
            )
        return [FlowRecord(**r) for r in rows if not r["deleted"]]

    def flow_revisions(self, namespace: str, flow_id: str) -> list[FlowRecord]:
        with self.conn() as conn:
            rows = (
                conn.cursor(row_factory=dict_row)
                .execute(
                    "SELECT namespace, id, revision, source, deleted, created_at FROM flows"
                    " WHERE namespace = %s AND id = %s ORDER BY revision",
                    (namespace, flow_id),
                )
                .fetchall()
            )
        return [FlowRecord(**r) for r in rows]

    def delete_flow(self, namespace: str, flow_id: str) -> bool:
        current = self.get_flow(namespace, flow_id)
        if current is None:
            return False
        with self.conn() as conn:
            conn.execute(
                "INSERT INTO flows (namespace, id, revision, source, deleted)"
                " VALUES (%s, %s, %s, %s, true)",
                (namespace, flow_id, current.revision + 1, current.source),
            )
            conn.execute("SELECT pg_notify('flowhawk_flows', %s)", (f"{namespace}/{flow_id}",))
        return True

    # -- executions -----------------------------------------------------------------
    def create_execution(
        self,
        *,
        namespace: str,
        flow_id: str,
        flow_revision: int,
        state: str = "CREATED",
        labels: dict[str, str] | None = None,
        inputs: dict[str, Any] | None = None,
        trigger: dict[str, Any] | None = None,
        trigger_id: str | None = None,
        trigger_date: datetime | None = None,
        parent_id: str | None = None,
        original_id: str | None = None,
        backfill_id: str | None = None,
        execution_id: str | None = None,
        conn: psycopg.Connection | None = None,
    ) -> ExecutionRecord:
        execution_id = execution_id or new_id()
        sql = (
            "INSERT INTO executions (id, namespace, flow_id, flow_revision, state, labels, inputs,"
            " trigger, trigger_id, trigger_date, parent_id, original_id, backfill_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            f" RETURNING {_EXECUTION_COLUMNS}"
        )
        notify = "SELECT pg_notify('flowhawk_queue', %s)"
        params = (
            execution_id,
            namespace,
            flow_id,
            flow_revision,
            state,
            Jsonb(labels or {}),
            Jsonb(inputs or {}),
            Jsonb(trigger) if trigger is not None else None,
            trigger_id,
            trigger_date,
            parent_id,
            original_id or execution_id,
            backfill_id,
        )
        if conn is not None:
            row = conn.cursor(row_factory=dict_row).execute(sql, params).fetchone()
            conn.execute(notify, (execution_id,))
        else:
            with self.conn() as c, c.transaction():
                row = c.cursor(row_factory=dict_row).execute(sql, params).fetchone()
                c.execute(notify, (execution_id,))
        assert row is not None
        return _execution(row)

    def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        with self.conn() as conn:
            row = (
                conn.cursor(row_factory=dict_row)
                .execute(
                    f"SELECT {_EXECUTION_COLUMNS} FROM executions WHERE id = %s", (execution_id,)
                )
                .fetchone()
            )
        return _execution(row) if row else None

    def set_execution_state(
        self,
        execution_id: str,
        state: str,
        *,
        error: str | None = None,
        outputs: dict[str, Any] | None = None,
        worker_id: str | None = None,
    ) -> None:
        """Move an execution to ``state``; start/end dates follow the state."""
        sets = ["state = %s", "updated_at = now()"]
        params: list[Any] = [state]
        if state == "RUNNING":
            sets.append("start_date = COALESCE(start_date, now())")
            sets.append("end_date = NULL")
        if state in TERMINAL_STATES:
            sets.append("end_date = now()")
            sets.append("start_date = COALESCE(start_date, now())")
        if error is not None:
            sets.append("error = %s")
            params.append(error)
        if outputs is not None:
            sets.append("outputs = %s")
            params.append(Jsonb(outputs))
        sql = f"UPDATE executions SET {', '.join(sets)} WHERE id = %s"
        params.append(execution_id)
        if worker_id is not None:
            sql += " AND worker_id = %s"
            params.append(worker_id)

        def update() -> None:
            with self.conn() as conn, conn.transaction():
                if state not in TERMINAL_STATES:
                    _relax_commit(conn)
                conn.execute(sql, params)
                conn.execute(
                    "SELECT pg_notify('flowhawk_executions', %s)", (f"{execution_id}:{state}",)
                )

        retrying(update)

    def add_labels(self, execution_id: str, labels: dict[str, str]) -> None:
        def update() -> None:
            with self.conn() as conn:
                conn.execute(
                    "UPDATE executions SET labels = labels || %s, updated_at = now() WHERE id = %s",
                    (Jsonb(labels), execution_id),
                )

        retrying(update)

    def request_kill(self, execution_id: str) -> bool:
        """Kill: a waiting execution ends KILLED now; a running one is told to stop."""
        with self.conn() as conn:
            cur = conn.execute(
                "UPDATE executions SET state = 'KILLED', kill_requested = true,"
                " start_date = COALESCE(start_date, now()), end_date = now(), updated_at = now()"
                " WHERE id = %s AND state IN ('CREATED', 'QUEUED')",
                (execution_id,),
            )
            if cur.rowcount:
                conn.execute(
                    "SELECT pg_notify('flowhawk_executions', %s)", (f"{execution_id}:KILLED",)
                )
                return True
            cur = conn.execute(
                "UPDATE executions SET kill_requested = true, updated_at = now()"
                " WHERE id = %s AND state NOT IN ('SUCCESS','WARNING','FAILED','KILLED','CANCELLED')",
                (execution_id,),
            )
            conn.execute("SELECT pg_notify('flowhawk_kill', %s)", (execution_id,))
            return cur.rowcount > 0

    def reset_for_restart(self, execution_id: str) -> None:
        with self.conn() as conn:
            conn.execute(
                "UPDATE executions SET state = 'CREATED', end_date = NULL, error = NULL,"
                " kill_requested = false, worker_id = NULL, updated_at = now() WHERE id = %s",
                (execution_id,),
            )
            conn.execute("SELECT pg_notify('flowhawk_queue', %s)", (execution_id,))

    def save_secret_inputs(self, execution_id: str, inputs: dict[str, Any]) -> None:
        """SECRET input values, for the worker that runs the execution (never shown)."""
        with self.conn() as conn:
            conn.execute(
                "INSERT INTO execution_secrets (execution_id, inputs) VALUES (%s, %s)"
                " ON CONFLICT (execution_id) DO UPDATE SET inputs = EXCLUDED.inputs",
                (execution_id, Jsonb(inputs)),
            )

    def secret_inputs(self, execution_id: str) -> dict[str, Any]:
        with self.conn() as conn:
            row = conn.execute(
                "SELECT inputs FROM execution_secrets WHERE execution_id = %s", (execution_id,)
            ).fetchone()
        return dict(row[0]) if row else {}

    def kill_requested(self, execution_id: str) -> bool:
        with self.conn() as conn:
            row = conn.execute(
                "SELECT kill_requested FROM executions WHERE id = %s", (execution_id,)
            ).fetchone()
        return bool(row and row[0])

    def list_executions(
        self,
        *,
        namespace: str | None = None,
        flow_id: str | None = None,
        states: Sequence[str] = (),
        labels: dict[str, str] | None = None,
        start_after: datetime | None = None,
        start_before: datetime | None = None,
        backfill_id: str | None = None,
        limit: int | None = None,
        before: tuple[datetime, str] | None = None,
    ) -> list[ExecutionRecord]:
        """Newest first; ``before`` = (created_at, id) of the last row seen (keyset paging)."""
        where = (
            Where()
            .add(bool(namespace), "namespace = %s", namespace)
            .add(bool(flow_id), "flow_id = %s", flow_id)
            .add(bool(states), "state = ANY(%s)", list(states))
            .add(bool(labels), "labels @> %s", Jsonb(labels or {}))
            .add(start_after is not None, "created_at >= %s", start_after)
            .add(start_before is not None, "created_at <= %s", start_before)
            .add(bool(backfill_id), "backfill_id = %s", backfill_id)
            .add(before is not None, "(created_at, id) < (%s, %s)", *(before or ()))
        )
        params = where.params
        sql = f"SELECT {_EXECUTION_COLUMNS} FROM executions{where.sql()}"
        sql += " ORDER BY created_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(limit)
        with self.conn() as conn:
            rows = conn.cursor(row_factory=dict_row).execute(sql, params).fetchall()
        return [_execution(r) for r in rows]

    # -- task runs ------------------------------------------------------------------
    def save_task_run(self, run: TaskRunRecord) -> None:
        retrying(lambda: self._save_task_run(run))

    def _save_task_run(self, run: TaskRunRecord) -> None:
        with self.conn() as conn, conn.transaction():
            _relax_commit(conn)
            conn.execute(
                "INSERT INTO task_runs (id, execution_id, path, task_id, parent_path, value, state,"
                " attempts, outputs, error, start_date, end_date)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (execution_id, path) DO UPDATE SET state = EXCLUDED.state,"
                " attempts = EXCLUDED.attempts, outputs = EXCLUDED.outputs, error = EXCLUDED.error,"
                " start_date = EXCLUDED.start_date, end_date = EXCLUDED.end_date,"
                " value = EXCLUDED.value, id = task_runs.id",
                (
                    run.id,
                    run.execution_id,
                    run.path,
                    run.task_id,
                    run.parent_path,
                    run.value,
                    run.state,
                    Jsonb(run.attempts),
                    Jsonb(run.outputs) if run.outputs is not None else None,
                    run.error,
                    run.start_date,
                    run.end_date,
                ),
            )

    def task_runs(self, execution_id: str) -> list[TaskRunRecord]:
        with self.conn() as conn:
            rows = (
                conn.cursor(row_factory=dict_row)
                .execute(
                    "SELECT id, execution_id, path, task_id, parent_path, value, state, attempts,"
                    " outputs, error, start_date, end_date FROM task_runs WHERE execution_id = %s"
                    " ORDER BY start_date NULLS LAST, path",
                    (execution_id,),
                )
                .fetchall()
            )
        return [TaskRunRecord(**r) for r in rows]

    def delete_task_runs(self, execution_id: str, paths: Iterable[str]) -> None:
        with self.conn() as conn:
            conn.execute(
                "DELETE FROM task_runs WHERE execution_id = %s AND path = ANY(%s)",
                (execution_id, list(paths)),
            )

    # -- logs -----------------------------------------------------------------------
    def write_logs(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """rows: (execution_id, task_run_id, task_id, attempt, ts, level, message)."""
        if not rows:
            return
        with self.conn() as conn, conn.transaction():
            _relax_commit(conn)
            with conn.cursor().copy(
                "COPY logs (execution_id, task_run_id, task_id, attempt, ts, level, message)"
                " FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row(row)
            conn.execute("SELECT pg_notify('flowhawk_logs', %s)", (rows[-1][0],))

    def logs(
        self,
        execution_id: str,
        *,
        after_id: int = 0,
        min_level: str | None = None,
        task_id: str | None = None,
        limit: int | None = None,
    ) -> list[LogRecord]:
        where = ["execution_id = %s", "id > %s"]
        params: list[Any] = [execution_id, after_id]
        if min_level:
            order = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
            level = "WARN" if min_level.upper() == "WARNING" else min_level.upper()
            if level in order:
                where.append("level = ANY(%s)")
                params.append(order[order.index(level) :])
        if task_id:
            where.append("task_id = %s")
            params.append(task_id)
        sql = (
            "SELECT id, execution_id, task_run_id, task_id, attempt, ts, level, message FROM logs"
            f" WHERE {' AND '.join(where)} ORDER BY id"
        )
        if limit:
            sql += " LIMIT %s"
            params.append(limit)
        with self.conn() as conn:
            rows = conn.cursor(row_factory=dict_row).execute(sql, params).fetchall()
        return [LogRecord(**r) for r in rows]

    # -- files ----------------------------------------------------------------------
    def record_files(
        self, execution_id: str, task_id: str, files: Sequence[tuple[str, int]]
    ) -> None:
        if not files:
            return
        with self.conn() as conn:
            conn.cursor().executemany(
                "INSERT INTO files (execution_id, task_id, uri, size) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                [(execution_id, task_id, uri, size) for uri, size in files],
            )

    def files(self, execution_id: str) -> list[dict[str, Any]]:
        with self.conn() as conn:
            return (
                conn.cursor(row_factory=dict_row)
                .execute(
                    "SELECT task_id, uri, size, created_at FROM files WHERE execution_id = %s"
                    " ORDER BY created_at",
                    (execution_id,),
                )
                .fetchall()
            )

    def forget_files(self, execution_id: str) -> None:
        with self.conn() as conn:
            conn.execute("DELETE FROM files WHERE execution_id = %s", (execution_id,))
