"""Real worker/server processes on a database of their own, and waiting on them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
