"""Worker processes on one PostgreSQL: kill, restart, SIGTERM and redeploy on a running system.

Every test starts real ``flowhawk worker`` processes against a database of its own. The
helpers here (``Cluster``, ``wait_until``) are shared by ``test_concurrency.py`` and
``test_failover.py``.
"""

from __future__ import annotations

import signal
import time

from cluster_helpers import Cluster, flowhawk_cli, pid_alive, wait_until

HANG = """\
id: hang
namespace: workers.kill
tasks:
  - id: before
    type: io.kestra.plugin.core.log.Log
    message: starting
  - id: hang
    type: io.kestra.plugin.scripts.shell.Commands
    commands:
      - echo $$ > {pidfile}
      - exec sleep 60
"""


def test_kill_running_execution_stops_its_subprocess(cluster: Cluster) -> None:
    pidfile = cluster.home / "sleep.pid"
    flow, revision = cluster.deploy(HANG.format(pidfile=pidfile))
    cluster.worker(threads=2)
    cluster.wait_workers(1)
    (execution_id,) = cluster.submit(flow, revision)
    pid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 30, "sleep pid"))
    assert pid_alive(pid)
    assert cluster.get(execution_id).state == "RUNNING"
    started = time.monotonic()
    result = flowhawk_cli(cluster, "executions", "kill", execution_id)
    assert result.returncode == 0, result.stderr
    assert "kill requested" in result.stdout
    done = cluster.wait_state(execution_id, ("KILLED",), timeout=15)
    assert time.monotonic() - started < 10
    assert done.end_date is not None
    assert not pid_alive(pid), "the task's `sleep 60` survived the kill"
    runs = {r.task_id: r for r in cluster.engine.repo.task_runs(execution_id)}
    assert runs["before"].state == "SUCCESS"
    assert runs["hang"].state == "KILLED"
    again = flowhawk_cli(cluster, "executions", "kill", execution_id)
    assert again.returncode == 1
    assert "already ended" in again.stderr


FLAKY = """\
id: flaky
namespace: workers.restart
inputs:
  - id: marker
    type: STRING
tasks:
  - id: first
    type: io.kestra.plugin.scripts.shell.Commands
    commands:
      - echo run >> {{{{ inputs.marker }}}}.first
  - id: second
    type: io.kestra.plugin.scripts.shell.Commands
    commands:
      - echo run >> {{{{ inputs.marker }}}}.second
      - test -f {{{{ inputs.marker }}}}.ok
  - id: third
    type: io.kestra.plugin.core.debug.Return
    format: "{{{{ trigger.date ?? 'no trigger' }}}}"
"""


def test_restart_of_a_failed_execution_runs_on_a_worker_from_the_failed_task(
    cluster: Cluster,
) -> None:
    marker = cluster.home / "marker"
    flow, revision = cluster.deploy(FLAKY.format())
    cluster.worker(threads=2)
    cluster.wait_workers(1)
    (execution_id,) = cluster.submit(flow, revision, marker=str(marker))
    failed = cluster.wait_state(execution_id, ("FAILED", "SUCCESS"))
    assert failed.state == "FAILED"
    marker.with_suffix(".ok").touch()
    result = flowhawk_cli(cluster, "executions", "restart", execution_id, "--no-wait")
    assert result.returncode == 0, result.stderr
    assert "restarted" in result.stdout
    done = cluster.wait_state(execution_id, ("SUCCESS", "FAILED"))
    assert done.state == "SUCCESS", cluster.logs()
    assert done.inputs == {"marker": str(marker)}
    assert done.worker_id is not None and done.worker_id.startswith("w-")
    # the first task ran once (its success was reused), the failed one twice
    assert marker.with_suffix(".first").read_text() == "run\n"
    assert marker.with_suffix(".second").read_text() == "run\nrun\n"
    runs = {r.task_id: r for r in cluster.engine.repo.task_runs(execution_id)}
    assert [r.state for r in (runs["first"], runs["second"], runs["third"])] == ["SUCCESS"] * 3


SLOW = """\
id: slow
namespace: workers.term
tasks:
  - id: nap
    type: io.kestra.plugin.core.flow.Sleep
    duration: PT{seconds}S
  - id: after
    type: io.kestra.plugin.core.debug.Return
    format: done
"""


def test_sigterm_lets_running_executions_finish_and_exits_zero(cluster: Cluster) -> None:
    flow, revision = cluster.deploy(SLOW.format(seconds=2))
    proc = cluster.worker(threads=2)
    cluster.wait_workers(1)
    ids = cluster.submit(flow, revision, count=2)
    wait_until(lambda: all(cluster.get(i).state == "RUNNING" for i in ids), 30, "both RUNNING")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(40) == 0, cluster.logs()
    for execution_id in ids:
        done = cluster.get(execution_id)
        assert done.state == "SUCCESS", (done.state, cluster.logs())
    # a stopped worker claims nothing more
    (later,) = cluster.submit(flow, revision)
    time.sleep(1.5)
    assert cluster.get(later).state == "CREATED"
    with cluster.engine.repo.conn() as conn:
        row = conn.execute("SELECT stopped_at IS NOT NULL FROM workers").fetchone()
    assert row == (True,)


def test_sigterm_hands_back_what_outlives_the_grace_and_another_worker_finishes_it(
    cluster: Cluster,
) -> None:
    """A task longer than the stop grace: the stopping worker hands the execution back and the
    other worker runs it to SUCCESS (the interrupted task as a new attempt)."""
    flow, revision = cluster.deploy(SLOW.format(seconds=4))
    first = cluster.worker(threads=1, FLOWHAWK_STOP_GRACE_SECONDS="1")
    cluster.wait_workers(1)
    (execution_id,) = cluster.submit(flow, revision)
    running = cluster.wait_state(execution_id, ("RUNNING",))
    cluster.worker(threads=1)
    cluster.wait_workers(2)
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0, cluster.logs()
    done = cluster.wait_state(execution_id, ("SUCCESS", "FAILED"), timeout=60)
    assert done.state == "SUCCESS", cluster.logs()
    assert done.worker_id != running.worker_id
    nap = next(r for r in cluster.engine.repo.task_runs(execution_id) if r.task_id == "nap")
    assert len(nap.attempts) == 2
    assert [a["state"] for a in nap.attempts] == ["KILLED", "SUCCESS"]


VERSIONED = """\
id: versioned
namespace: workers.deploy
tasks:
  - id: say
    type: io.kestra.plugin.core.debug.Return
    format: "{word}"
"""


def test_deploy_on_a_running_system_is_used_by_the_next_execution(cluster: Cluster) -> None:
    flow_file = cluster.home / "versioned.yaml"
    flow_file.write_text(VERSIONED.format(word="first"))
    deployed = flowhawk_cli(cluster, "flow", "deploy", str(flow_file))
    assert deployed.returncode == 0, deployed.stderr
    cluster.worker(threads=2)
    cluster.wait_workers(1)
    flow, revision = cluster.engine.flow("workers.deploy", "versioned")
    (one,) = cluster.submit(flow, revision)
    assert cluster.wait_state(one, ("SUCCESS",)).flow_revision == 1
    flow_file.write_text(VERSIONED.format(word="second"))
    deployed = flowhawk_cli(cluster, "flow", "deploy", str(flow_file))
    assert deployed.returncode == 0, deployed.stderr
    assert "revision 2 deployed" in deployed.stdout
    flow, revision = cluster.engine.flow("workers.deploy", "versioned")
    (two,) = cluster.submit(flow, revision)
    assert cluster.wait_state(two, ("SUCCESS",)).flow_revision == 2
    outputs = {
        i: next(r for r in cluster.engine.repo.task_runs(i) if r.task_id == "say").outputs
        for i in (one, two)
    }
    assert outputs == {one: {"value": "first"}, two: {"value": "second"}}
