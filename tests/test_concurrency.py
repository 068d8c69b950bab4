"""Concurrency limits held across worker processes on one PostgreSQL.

The largest number RUNNING at once is checked two ways: by sampling the database every 20 ms
while the work runs, and afterwards from the executions' start and end dates.
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import datetime, timedelta

import psycopg

from cluster_helpers import Cluster, flowhawk_cli, wait_until
from flowhawk.store.records import ExecutionRecord

LIMITED = """\
id: limited
namespace: conc.queue
concurrency:
  limit: 2
tasks:
  - id: nap
    type: io.kestra.plugin.core.flow.Sleep
    duration: PT0.2S
  - id: done
    type: io.kestra.plugin.core.debug.Return
    format: "{{ execution.id }}"
"""


class RunningSampler:
    """Counts the RUNNING executions of a namespace every ``every`` seconds, in a thread."""

    def __init__(self, url: str, namespace: str, every: float = 0.02) -> None:
        self.url = url
        self.namespace = namespace
        self.every = every
        self.samples: list[int] = []
        self.queued_with_free_slot = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RunningSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self._stop.wait(self.every):
                row = conn.execute(
                    "SELECT count(*) FILTER (WHERE state = 'RUNNING') FROM executions"
                    " WHERE namespace = %s",
                    (self.namespace,),
                ).fetchone()
                assert row is not None
                self.samples.append(int(row[0]))


def max_overlap(rows: list[ExecutionRecord]) -> int:
    """The most executions whose [start, end) intervals overlap at one instant."""
    events: list[tuple[datetime, int]] = []
    for row in rows:
        assert row.start_date is not None and row.end_date is not None, row
        events.append((row.start_date, 1))
        events.append((row.end_date, -1))
    events.sort()  # an end (-1) sorts before a start (+1) at the same instant
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def test_limit_two_holds_across_three_processes_with_200_submitted_at_once(
    cluster: Cluster,
) -> None:
    flow, revision = cluster.deploy(LIMITED)
    cluster.worker(threads=4)
    cluster.worker(threads=4)
    server = cluster.server(threads=4)
    cluster.wait_workers(3)
    with RunningSampler(cluster.url, "conc.queue") as sampler:
        ids = cluster.submit(flow, revision, count=200)
        rows = cluster.wait_ended(ids, timeout=180)
    assert [r.state for r in rows] == ["SUCCESS"] * 200
    assert len(sampler.samples) > 200
    assert max(sampler.samples) == 2, max(sampler.samples)
    assert max_overlap(rows) == 2
    with cluster.engine.repo.conn() as conn:
        registered = {r[0] for r in conn.execute("SELECT id FROM workers").fetchall()}
    assert len(registered) == 3
    assert {r.worker_id for r in rows} <= registered
    # first in, first out: executions start in the order they were submitted
    by_start = sorted(rows, key=lambda r: r.start_date or datetime.min)
    assert [r.seq for r in by_start] == sorted(r.seq or 0 for r in rows)
    # a slot never stays free while some wait: each start follows an end closely
    ends = sorted(r.end_date for r in rows if r.end_date)
    for row in by_start[2:]:
        assert row.start_date is not None
        freed = max(e for e in ends if e <= row.start_date)
        assert row.start_date - freed < timedelta(seconds=1.5), (row.id, freed, row.start_date)
    # the server process stops cleanly on SIGTERM
    server.send_signal(signal.SIGTERM)
    assert server.wait(30) == 0, cluster.logs()


def _over_limit(cluster: Cluster, behavior: str) -> None:
    source = (
        LIMITED.replace("conc.queue", f"conc.{behavior.lower()}")
        .replace("limit: 2", f"limit: 1\n  behavior: {behavior}")
        .replace("PT0.2S", "PT2S")
    )
    flow, revision = cluster.deploy(source)
    cluster.worker(threads=3)
    cluster.worker(threads=3)
    cluster.wait_workers(2)
    ids = cluster.submit(flow, revision, count=6)
    final = "CANCELLED" if behavior == "CANCEL" else "FAILED"
    # the five over the limit end at once, while the first still sleeps

    def five_rejected() -> list[ExecutionRecord] | None:
        rows = [r for r in map(cluster.get, ids) if r.state == final]
        return rows if len(rows) == 5 else None

    rejected = wait_until(five_rejected, 10, f"five executions {final}")
    running = [cluster.get(i) for i in ids if cluster.get(i).state == "RUNNING"]
    assert len(running) == 1
    assert running[0].id == ids[0], "the oldest one got the slot"
    for row in rejected:
        assert row.error == f"concurrency limit of 1 reached ({behavior})"
        assert row.end_date is not None and row.created_at is not None
        assert row.end_date - row.created_at < timedelta(seconds=5)
        assert cluster.engine.repo.task_runs(row.id) == []
    assert cluster.wait_state(ids[0], ("SUCCESS",), timeout=30).state == "SUCCESS"
    # with the slot free again, the next one runs
    (later,) = cluster.submit(flow, revision)
    assert cluster.wait_state(later, ("SUCCESS", final), timeout=30).state == "SUCCESS"


def test_cancel_behavior_ends_executions_over_the_limit_cancelled(cluster: Cluster) -> None:
    _over_limit(cluster, "CANCEL")


def test_fail_behavior_ends_executions_over_the_limit_failed(cluster: Cluster) -> None:
    _over_limit(cluster, "FAIL")


GATE = """\
id: gate
namespace: conc.gate
concurrency:
  limit: 1
inputs:
  - id: cmd
    type: STRING
tasks:
  - id: work
    type: io.kestra.plugin.scripts.shell.Commands
    commands:
      - "{{ inputs.cmd }}"
"""


def test_no_execution_stays_queued_while_a_slot_is_free(cluster: Cluster) -> None:
    """One slot; the execution holding it ends by kill, by failure and by success in turn,
    and a QUEUED one is killed while waiting: each time the next one starts at once."""
    flow, revision = cluster.deploy(GATE)
    cluster.worker(threads=2)
    cluster.worker(threads=2)
    cluster.wait_workers(2)
    hang = cluster.submit(flow, revision, cmd="sleep 60")[0]
    dropped = cluster.submit(flow, revision, cmd="echo never")[0]
    fail = cluster.submit(flow, revision, cmd="sleep 0.5; exit 3")[0]
    ok = cluster.submit(flow, revision, cmd="sleep 0.5")[0]
    last = cluster.submit(flow, revision, cmd="true")[0]
    cluster.wait_state(hang, ("RUNNING",))
    wait_until(
        lambda: all(cluster.get(i).state == "QUEUED" for i in (dropped, fail, ok, last)),
        10,
        "the others QUEUED",
    )
    # a queued execution killed while waiting ends at once and never runs
    assert flowhawk_cli(cluster, "executions", "kill", dropped).returncode == 0
    assert cluster.get(dropped).state == "KILLED"
    time.sleep(0.5)
    assert cluster.get(hang).state == "RUNNING"
    assert cluster.get(fail).state == "QUEUED"
    assert flowhawk_cli(cluster, "executions", "kill", hang).returncode == 0
    rows = cluster.wait_ended([hang, dropped, fail, ok, last], timeout=60)
    assert [r.state for r in rows] == ["KILLED", "KILLED", "FAILED", "SUCCESS", "SUCCESS"]
    assert cluster.engine.repo.task_runs(dropped) == []
    chain = [rows[0], rows[2], rows[3], rows[4]]
    for before, after in zip(chain, chain[1:], strict=False):
        assert before.end_date is not None and after.start_date is not None
        gap = after.start_date - before.end_date
        # after kill, failure and success alike the next one starts within a poll interval
        assert timedelta(0) <= gap < timedelta(seconds=1.2), (before.state, gap)
