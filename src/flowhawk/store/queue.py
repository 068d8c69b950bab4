"""PostgreSQL as the execution queue: claiming, concurrency slots, heartbeats, takeover.

Claiming happens in one short transaction per execution. The flow's concurrency limit is counted
under a transaction-level advisory lock of that flow, so every worker process sees the same count;
a backfill's parallelism is counted under the same lock (its executions belong to one flow).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from flowhawk.errors import FlowhawkError
from flowhawk.store.repository import Repository


@dataclass(frozen=True)
class Limit:
    """A flow revision's concurrency setting (None = unlimited)."""

    limit: int | None
    behavior: str = "QUEUE"


@dataclass(frozen=True)
class Claimed:
    id: str
    namespace: str
    flow_id: str


LimitLookup = Callable[[str, str, int], Limit]

_FLOWS_WAITING = """
SELECT namespace, flow_id, min(seq) AS first, (array_agg(flow_revision ORDER BY seq))[1]
FROM executions
WHERE state IN ('CREATED', 'QUEUED') AND NOT kill_requested
GROUP BY namespace, flow_id
ORDER BY first
LIMIT %s
"""

#: the oldest waiting executions of one flow, leaving out paused/cancelled backfills and
#: backfills already running as many executions as their parallelism allows
_OLDEST_OF_FLOW = """
SELECT id, flow_revision, state
FROM executions e
WHERE namespace = %s AND flow_id = %s AND state IN ('CREATED', 'QUEUED')
  AND NOT kill_requested
  AND (backfill_id IS NULL OR backfill_id IN (
        SELECT b.id FROM backfills b
        WHERE b.state = 'RUNNING' AND b.parallelism > (
            SELECT count(*) FROM executions r
            WHERE r.backfill_id = b.id AND r.state IN ('RUNNING', 'KILLING'))))
ORDER BY seq
LIMIT 64
"""


def _limit_of(limits: LimitLookup, namespace: str, flow_id: str, revision: int) -> Limit:
    """The limit of the oldest waiting execution's revision; a flow that cannot be loaded has
    none here, so that its execution is claimed and the executor fails it with the reason."""
    try:
        return limits(namespace, flow_id, revision)
    except FlowhawkError:
        return Limit(None)


class Queue:
    def __init__(self, repo: Repository) -> None:
        self.repo = repo

    # -- workers --------------------------------------------------------------------
    def register_worker(self, worker_id: str, threads: int, kind: str = "worker") -> None:
        with self.repo.conn() as conn:
            conn.execute(
                "INSERT INTO workers (id, hostname, pid, kind, threads) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), stopped_at = NULL",
                (worker_id, socket.gethostname(), os.getpid(), kind, threads),
            )

    def heartbeat(self, worker_id: str) -> None:
        with self.repo.conn() as conn:
            conn.execute("UPDATE workers SET heartbeat_at = now() WHERE id = %s", (worker_id,))
            conn.execute(
                "UPDATE executions SET heartbeat_at = now() WHERE worker_id = %s AND state = 'RUNNING'",
                (worker_id,),
            )

    def stop_worker(self, worker_id: str) -> None:
        with self.repo.conn() as conn:
            conn.execute("UPDATE workers SET stopped_at = now() WHERE id = %s", (worker_id,))

    def live_workers(self, stale_seconds: float) -> int:
        with self.repo.conn() as conn:
            row = conn.execute(
                "SELECT count(*) FROM workers WHERE stopped_at IS NULL"
                " AND heartbeat_at > now() - make_interval(secs => %s)",
                (stale_seconds,),
            ).fetchone()
        return int(row[0]) if row else 0

    def take_over(self, stale_seconds: float) -> list[str]:
        """Hand back executions whose worker stopped heart-beating; they run again elsewhere.

        A worker id is ``ID`` or, while that worker hands an execution back, ``ID:handback``;
        either counts as alive while worker ``ID`` heartbeats."""
        with self.repo.conn() as conn:
            rows = conn.execute(
                "UPDATE executions SET state = 'CREATED', worker_id = NULL, updated_at = now()"
                " WHERE state IN ('RUNNING', 'KILLING') AND worker_id IS NOT NULL"
                " AND split_part(worker_id, ':', 1) NOT IN ("
                "   SELECT id FROM workers WHERE stopped_at IS NULL"
                "   AND heartbeat_at >= now() - make_interval(secs => %s))"
                " RETURNING id",
                (stale_seconds,),
            ).fetchall()
            if rows:
                conn.execute("SELECT pg_notify('flowhawk_queue', 'takeover')")
        return [r[0] for r in rows]

    def release(self, execution_id: str, worker_id: str) -> bool:
        """First step of a hand-back: the execution stays RUNNING (nobody claims it) but the
        writes its worker makes as the execution ends no longer count."""
        with self.repo.conn() as conn:
            cur = conn.execute(
                "UPDATE executions SET worker_id = %s WHERE id = %s AND worker_id = %s"
                " AND state = 'RUNNING'",
                (f"{worker_id}:handback", execution_id, worker_id),
            )
            return cur.rowcount > 0

    def hand_back(self, execution_id: str, worker_id: str) -> None:
        """Make an execution of this worker claimable again (it re-runs what did not end)."""
        with self.repo.conn() as conn:
            conn.execute(
                "UPDATE executions SET state = 'CREATED', worker_id = NULL, updated_at = now()"
                " WHERE id = %s AND worker_id IN (%s, %s) AND state = 'RUNNING'",
                (execution_id, worker_id, f"{worker_id}:handback"),
            )
            conn.execute("SELECT pg_notify('flowhawk_queue', %s)", (execution_id,))

    # -- claiming -------------------------------------------------------------------
    def claim(self, worker_id: str, limits: LimitLookup, scan: int = 32) -> Claimed | None:
        """Claim the oldest runnable execution, or None. Executions over a CANCEL/FAIL limit end
        here; over a QUEUE limit they become QUEUED and wait their turn."""
        with self.repo.conn() as conn:
            flows = conn.execute(_FLOWS_WAITING, (scan,)).fetchall()
        for namespace, flow_id, _first, revision in flows:
            # looked up holding no connection: it may read the flow from the pool, and a
            # thread holding one connection while waiting for another can starve the pool
            limit = _limit_of(limits, namespace, flow_id, revision)
            with self.repo.conn() as conn:
                try:
                    claimed = self._claim_in_flow(conn, worker_id, namespace, flow_id, limit)
                except psycopg.errors.LockNotAvailable:
                    continue  # another worker holds this flow for long: try the next flow
            if claimed is not None:
                return claimed
        return None

    def _claim_in_flow(
        self,
        conn: psycopg.Connection,
        worker_id: str,
        namespace: str,
        flow_id: str,
        limit: Limit,
    ) -> Claimed | None:
        with conn.transaction():
            # Waiting a moment for the flow's lock (held for a millisecond or two) beats giving
            # up and sleeping until the next wake-up. The commit need not wait for its WAL
            # flush: visibility, hence the limit, is unaffected; the execution's durable final
            # state flushes it, and only a crash of PostgreSQL itself can undo a claim.
            conn.execute(
                "SELECT set_config('lock_timeout', '2s', true),"
                " set_config('synchronous_commit', 'off', true)"
            )
            conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (f"run:{namespace}/{flow_id}",)
            )
            rows = conn.execute(_OLDEST_OF_FLOW, (namespace, flow_id)).fetchall()
            if not rows:
                return None
            count = conn.execute(
                "SELECT count(*) FROM executions WHERE namespace = %s AND flow_id = %s"
                " AND state IN ('RUNNING', 'KILLING')",
                (namespace, flow_id),
            ).fetchone()
            running = int(count[0]) if count else 0
            if limit.limit is None or running < limit.limit:
                for candidate, _rev, _st in rows:
                    # clock_timestamp(): taken after the slot was seen free, so a start date is
                    # never earlier than the end date of the execution whose slot it took; the
                    # state test skips one killed or cancelled meanwhile
                    cur = conn.execute(
                        "UPDATE executions SET state = 'RUNNING', worker_id = %s,"
                        " heartbeat_at = now(), start_date = COALESCE(start_date, clock_timestamp()),"
                        " end_date = NULL, updated_at = now()"
                        " WHERE id = %s AND state IN ('CREATED', 'QUEUED') AND NOT kill_requested",
                        (worker_id, candidate),
                    )
                    if cur.rowcount:
                        return Claimed(candidate, namespace, flow_id)
                return None
            ids = [r[0] for r in rows]
            if limit.behavior == "QUEUE":
                conn.execute(
                    "UPDATE executions SET state = 'QUEUED', updated_at = now()"
                    " WHERE id = ANY(%s) AND state = 'CREATED'",
                    (ids,),
                )
                return None
            final = "CANCELLED" if limit.behavior == "CANCEL" else "FAILED"
            conn.execute(
                "UPDATE executions SET state = %s, start_date = COALESCE(start_date, now()),"
                " end_date = now(), updated_at = now(), error = %s WHERE id = ANY(%s)"
                " AND state IN ('CREATED', 'QUEUED') AND NOT kill_requested",
                (final, f"concurrency limit of {limit.limit} reached ({limit.behavior})", ids),
            )
            conn.execute("SELECT pg_notify('flowhawk_executions', %s)", (f"*:{final}",))
        return None
