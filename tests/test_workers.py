"""Worker processes on one PostgreSQL: kill, restart, SIGTERM and redeploy on a running system.

Every test starts real ``flowhawk worker`` processes against a database of its own. The
helpers here (``Cluster``, ``wait_until``) are shared by ``test_concurrency.py`` and
``test_failover.py``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowhawk.config import Settings
from flowhawk.engine.service import Engine
from flowhawk.flow.model import Flow
from flowhawk.store.records import TERMINAL_STATES, ExecutionRecord


def wait_until(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """flowhawk processes sharing one database, plus an in-process Engine to submit work."""

    def __init__(self, url: str, home: Path, **env: str) -> None:
        self.url = url
        self.home = home
        self.env = {
            **os.environ,
            "FLOWHAWK_DATABASE_URL": url,
            "FLOWHAWK_HOME": str(home),
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.engine = Engine(Settings(database_url=url, storage_path=home / "storage"))
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, *args: str, **env: str) -> subprocess.Popen[bytes]:
        """Start ``flowhawk ARGS`` (e.g. ``worker --threads 4``) in a session of its own."""
        log = self.home / f"proc-{len(self.procs)}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "flowhawk", *args],
            env={**self.env, **env},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append((proc, log))
        return proc

    def worker(self, threads: int = 4, **env: str) -> subprocess.Popen[bytes]:
        return self.start("worker", "--threads", str(threads), **env)

    def server(self, threads: int = 4, **env: str) -> subprocess.Popen[bytes]:
        return self.start(
            "server", "--no-scheduler", "--port", str(free_port()), "--threads", str(threads), **env
        )

    def worker_pid(self, worker_id: str) -> int:
        with self.engine.repo.conn() as conn:
            row = conn.execute("SELECT pid FROM workers WHERE id = %s", (worker_id,)).fetchone()
        assert row is not None, worker_id
        return int(row[0])

    def wait_workers(self, count: int, timeout: float = 30) -> None:
        def live() -> bool:
            for proc, log in self.procs:
                assert proc.poll() is None, f"{proc.args!r} exited:\n{log.read_text()}"
            with self.engine.repo.conn() as conn:
                row = conn.execute(
                    "SELECT count(*) FROM workers WHERE stopped_at IS NULL"
                ).fetchone()
            return bool(row and row[0] >= count)

        wait_until(live, timeout, f"{count} live worker(s)")

    def logs(self) -> str:
        return "\n".join(f"--- {p.args!r}\n{log.read_text()}" for p, log in self.procs)

    def deploy(self, source: str) -> tuple[Flow, int]:
        flow, revision, _ = self.engine.deploy_source(source)
        return flow, revision

    def submit(self, flow: Flow, revision: int, count: int = 1, **inputs: Any) -> list[str]:
        return [
            self.engine.create_execution(flow, revision, inputs=inputs).execution.id
            for _ in range(count)
        ]

    def get(self, execution_id: str) -> ExecutionRecord:
        found = self.engine.repo.get_execution(execution_id)
        assert found is not None, execution_id
        return found

    def wait_state(
        self, execution_id: str, states: tuple[str, ...], timeout: float = 60
    ) -> ExecutionRecord:
        def reached() -> ExecutionRecord | None:
            found = self.get(execution_id)
            return found if found.state in states else None

        try:
            return wait_until(reached, timeout, f"{execution_id} to be {'/'.join(states)}")  # type: ignore[no-any-return]
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}; it is {self.get(execution_id).state}\n{self.logs()}"
            ) from None

    def wait_ended(self, ids: list[str], timeout: float = 120) -> list[ExecutionRecord]:
        def ended() -> list[ExecutionRecord] | None:
            rows = [self.get(i) for i in ids]
            return rows if all(r.state in TERMINAL_STATES for r in rows) else None

        try:
            return wait_until(ended, timeout, f"{len(ids)} executions to end", every=0.3)  # type: ignore[no-any-return]
        except AssertionError as exc:
            states = sorted(self.get(i).state for i in ids)
            raise AssertionError(f"{exc}; states: {states}\n{self.logs()[-5000:]}") from None

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in self.procs:
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.engine.close()


@pytest.fixture
def cluster(fresh_pg_url: str, tmp_path: Path) -> Iterator[Cluster]:
    found = Cluster(fresh_pg_url, tmp_path)
    yield found
    found.stop()


def flowhawk_cli(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowhawk", *args],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


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
