"""Failures under load: a worker killed with SIGKILL mid-task, PostgreSQL stopped and started
again under a running backfill. Real processes, real PostgreSQL."""

from __future__ import annotations

import json
import signal
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cluster_helpers import Cluster, flowhawk_cli, wait_until

CRASH = """\
id: crash
namespace: failover.kill
concurrency:
  limit: 1
inputs:
  - id: marker
    type: STRING
tasks:
  - id: first
    type: io.kestra.plugin.core.debug.Return
    format: ready
  - id: long
    type: io.kestra.plugin.scripts.shell.Commands
    commands:
      - echo started >> {{ inputs.marker }}
      - sleep 2
  - id: last
    type: io.kestra.plugin.core.debug.Return
    format: "{{ outputs.first.value }}"
"""


def test_a_worker_killed_mid_task_loses_its_execution_to_another(cluster: Cluster) -> None:
    marker = cluster.home / "started"
    flow, revision = cluster.deploy(CRASH)
    procs = [cluster.worker(threads=2, FLOWHAWK_TAKEOVER_SECONDS="3") for _ in range(2)]
    cluster.wait_workers(2)
    (victim,) = cluster.submit(flow, revision, marker=str(marker))
    (behind,) = cluster.submit(flow, revision, marker=str(cluster.home / "behind"))
    wait_until(marker.exists, 30, "the long task to start")
    owner = cluster.get(victim).worker_id
    assert owner is not None
    doomed = next(p for p in procs if p.pid == cluster.worker_pid(owner))
    cluster.wait_state(behind, ("QUEUED",), timeout=10)
    doomed.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    doomed.wait(10)
    done = cluster.wait_state(victim, ("SUCCESS", "FAILED"), timeout=60)
    assert done.state == "SUCCESS", cluster.logs()
    assert time.monotonic() - killed_at < 20, "taken over within the takeover time and a poll"
    assert done.worker_id is not None and done.worker_id != owner
    runs = {r.task_id: r for r in cluster.engine.repo.task_runs(victim)}
    assert [len(runs[t].attempts) for t in ("first", "long", "last")] == [1, 2, 1]
    assert [a["state"] for a in runs["long"].attempts] == ["KILLED", "SUCCESS"]
    assert marker.read_text() == "started\nstarted\n"
    assert runs["last"].outputs == {"value": "ready"}
    # the one waiting for the slot ran right after
    after = cluster.wait_state(behind, ("SUCCESS", "FAILED"), timeout=30)
    assert after.state == "SUCCESS"
    assert after.start_date is not None and done.end_date is not None
    assert after.start_date - done.end_date < timedelta(seconds=1.5)


MONTHLY = """\
id: monthly
namespace: failover.pg
tasks:
  - id: value
    type: io.kestra.plugin.core.output.OutputValues
    values:
      month: "{{ trigger.date }}"
  - id: nap
    type: io.kestra.plugin.core.flow.Sleep
    duration: PT0.7S
  - id: log
    type: io.kestra.plugin.core.log.Log
    message: "month {{ outputs.value.values.month }}"
triggers:
  - id: monthly
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 9 1 * *"
"""


class OwnPostgres:
    """An embedded PostgreSQL (pgserver) of this test's own, which it may stop and start."""

    def __init__(self, root: Path) -> None:
        pgserver = pytest.importorskip("pgserver")
        self.server: Any = pgserver.get_server(root / "pgdata", cleanup_mode="stop")
        with psycopg.connect(self.server.get_uri("postgres"), autocommit=True) as conn:
            conn.execute('CREATE DATABASE "flowhawk"')
        self.url: str = self.server.get_uri("flowhawk")

    def pg_ctl(self, *args: str) -> None:
        from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

        pg_ctl(list(args), pgdata=self.server.pgdata, user=self.server.system_user, timeout=60)

    def stop(self) -> None:
        self.pg_ctl("-w", "-m", "fast", "stop")

    def start(self) -> None:
        self.server.ensure_postgres_running()

    def close(self) -> None:
        self.server.cleanup()


@pytest.fixture
def own_pg() -> Iterator[OwnPostgres]:
    # a short path of its own: the server's socket lives there
    root = Path(tempfile.mkdtemp(prefix="fhpg"))
    found = OwnPostgres(root)
    yield found
    found.close()


def _retrying(query: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return query()
        except (psycopg.OperationalError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_postgres_restart_under_a_running_backfill_costs_a_pause(
    own_pg: OwnPostgres, tmp_path: Path
) -> None:
    cluster = Cluster(own_pg.url, tmp_path)
    try:
        cluster.deploy(MONTHLY)
        server = cluster.server(threads=4)
        cluster.wait_workers(1)
        created = flowhawk_cli(
            cluster,
            "backfill",
            "failover.pg/monthly",
            "--start",
            "2019-01-01",
            "--end",
            "2019-12-31",
            "--parallelism",
            "2",
            "--json",
        )
        assert created.returncode == 0, created.stderr
        backfill_id = json.loads(created.stdout)["id"]

        def states() -> dict[str, int]:
            with psycopg.connect(own_pg.url, autocommit=True, connect_timeout=3) as conn:
                rows = conn.execute(
                    "SELECT state, count(*) FROM executions WHERE backfill_id = %s GROUP BY state",
                    (backfill_id,),
                ).fetchall()
            return {state: count for state, count in rows}

        wait_until(lambda: states().get("SUCCESS", 0) >= 2, 30, "two months done")
        # stop the database while months are under way (between two months none may be)
        wait_until(lambda: states().get("RUNNING", 0) > 0, 30, "a month running")
        own_pg.stop()
        time.sleep(3)  # the outage: every connection of the server is gone
        assert server.poll() is None, cluster.logs()
        own_pg.start()

        def all_done() -> bool:
            current = _retrying(states)
            assert server.poll() is None, cluster.logs()
            return current.get("SUCCESS", 0) == 12

        try:
            wait_until(all_done, 90, "12 SUCCESS executions")
        except AssertionError:
            raise AssertionError(f"{_retrying(states)}\n{cluster.logs()[-6000:]}") from None
        assert server.poll() is None
        shown = flowhawk_cli(cluster, "backfill", "show", backfill_id, "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["state"] == "SUCCESS"
        # every month ran once, logs included
        with psycopg.connect(own_pg.url, autocommit=True) as conn:
            months = conn.execute(
                "SELECT e.trigger_date, count(l.id) FROM executions e"
                " LEFT JOIN logs l ON l.execution_id = e.id AND l.message LIKE 'month %%'"
                " WHERE e.backfill_id = %s GROUP BY e.trigger_date ORDER BY 1",
                (backfill_id,),
            ).fetchall()
        assert [m[0].month for m in months] == list(range(1, 13))
        assert all(m[1] >= 1 for m in months), months
        # and the server still takes new work
        flow, revision = cluster.engine.flow("failover.pg", "monthly")
        fresh = cluster.engine.create_execution(
            flow, revision, trigger_id="monthly", trigger_date=datetime(2020, 1, 1, 9, tzinfo=UTC)
        ).execution.id
        assert cluster.wait_state(fresh, ("SUCCESS", "FAILED"), timeout=30).state == "SUCCESS"
    finally:
        cluster.stop()
