"""Issue 3 benchmark: executions per minute against end-to-end latency, 200 at once, a 12-tick
backfill and idle memory, for a two-task flow (output a value, log it).

    python bench/throughput.py [--rates 20,50,80,120] [--seconds 20] [--threads 8]

A ``flowhawk server --no-scheduler`` process runs on a fresh database of its own (created on
``FLOWHAWK_BENCH_DATABASE_URL``, else ``FLOWHAWK_TEST_DATABASE_URL``, else the embedded
PostgreSQL); this process submits executions at a fixed rate and reads the results back from
PostgreSQL. Latency is ``end_date - created_at`` of each execution.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import conninfo

ROOT = Path(__file__).resolve().parents[1]

TWO_TASKS = """\
id: two_tasks
namespace: bench.throughput
tasks:
  - id: value
    type: io.kestra.plugin.core.output.OutputValues
    values:
      answer: "42"
  - id: log
    type: io.kestra.plugin.core.log.Log
    message: "the answer is {{ outputs.value.values.answer }}"
triggers:
  - id: monthly
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 9 1 * *"
"""

#: figures published or measured for the other systems (see issue 3)
BASELINES = {
    "rate": "JVM original: 1,500/min at 0.9 s (4+4 vCPU), collapses at 2,000/min",
    "burst": "Airflow 3: ~140/min; Dagster 1.13: ~9/min",
    "backfill": "Airflow 3: ~15 s; Dagster 1.13: ~79 s",
    "memory": "Airflow 3: ~1 GB PSS (39 processes); Dagster 1.13: ~450 MB",
}


@dataclass
class Phase:
    name: str
    submitted: int
    finished: int
    failed: int
    per_minute: float
    p50: float
    p95: float
    worst: float


def server_url() -> str:
    for key in ("FLOWHAWK_BENCH_DATABASE_URL", "FLOWHAWK_TEST_DATABASE_URL"):
        if os.environ.get(key):
            return os.environ[key]
    from flowhawk.store.db import embedded_url

    return embedded_url()


def fresh_database(url: str) -> tuple[str, str]:
    name = f"fh_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, conninfo.make_conninfo(url, dbname=name)


def drop_database(url: str, name: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in kB of a process and its descendants, from /proc/<pid>/smaps_rollup."""
    rss = pss = 0
    for each in [pid, *descendants(pid)]:
        try:
            text = Path(f"/proc/{each}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            key, _, rest = line.partition(":")
            if key == "Rss":
                rss += int(rest.split()[0])
            elif key == "Pss":
                pss += int(rest.split()[0])
    return rss, pss


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Bench:
    def __init__(self, url: str, home: Path, threads: int) -> None:
        from flowhawk.config import Settings
        from flowhawk.engine.service import Engine

        self.url = url
        self.home = home
        self.env = {**os.environ, "FLOWHAWK_DATABASE_URL": url, "FLOWHAWK_HOME": str(home)}
        self.engine = Engine(Settings(database_url=url, storage_path=home / "storage"))
        self.flow, self.revision, _ = self.engine.deploy_source(TWO_TASKS)
        self.log = (home / "server.log").open("wb")
        self.port = free_port()
        self.server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flowhawk",
                "server",
                "--no-scheduler",
                "--port",
                str(self.port),
                "--threads",
                str(threads),
            ],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_worker()

    def _wait_worker(self) -> None:
        """Until the server is up: its worker registered and its HTTP port accepting."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise SystemExit(
                    f"flowhawk server exited: {(self.home / 'server.log').read_text()}"
                )
            with psycopg.connect(self.url, autocommit=True) as conn:
                row = conn.execute("SELECT count(*) FROM workers").fetchone()
            if row and row[0]:
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return
                except OSError:
                    pass
            time.sleep(0.2)
        raise SystemExit("flowhawk server was not up within 60 s")

    def submit(self) -> str:
        return self.engine.create_execution(self.flow, self.revision).execution.id

    def at_rate(self, rate: float, seconds: float) -> list[str]:
        ids: list[str] = []
        start = time.perf_counter()
        total = int(rate * seconds)
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            ids.append(self.submit())
        return ids

    def results(
        self, ids: list[str], timeout: float
    ) -> list[tuple[str, datetime, datetime | None]]:
        deadline = time.monotonic() + timeout
        while True:
            with psycopg.connect(self.url, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT state, created_at, end_date FROM executions WHERE id = ANY(%s)",
                    (ids,),
                ).fetchall()
            done = [r for r in rows if r[2] is not None]
            if len(done) == len(ids) or time.monotonic() > deadline:
                return rows
            time.sleep(0.25)

    def phase(self, name: str, ids: list[str], timeout: float = 300) -> Phase:
        rows = self.results(ids, timeout)
        ended = [(state, made, end) for state, made, end in rows if end is not None]
        latencies = sorted((end - made).total_seconds() for _, made, end in ended)
        first = min(r[1] for r in rows)
        last = max((end for _, _, end in ended), default=first)
        span = max((last - first).total_seconds(), 1e-6)
        return Phase(
            name=name,
            submitted=len(ids),
            finished=sum(r[0] == "SUCCESS" for r in rows),
            failed=sum(r[0] not in ("SUCCESS",) for r in ended),
            per_minute=len(ended) / span * 60,
            p50=statistics.median(latencies) if latencies else float("nan"),
            p95=latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan"),
            worst=latencies[-1] if latencies else float("nan"),
        )

    def backfill(self, parallelism: int) -> tuple[float, str]:
        started = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "flowhawk",
                "backfill",
                "bench.throughput/two_tasks",
                "--start",
                "2019-01-01",
                "--end",
                "2019-12-31",
                "--parallelism",
                str(parallelism),
                "--wait",
            ],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            return wall, f"failed: {done.stderr.strip()[-300:]}"
        return wall, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "ok"

    def close(self) -> None:
        self.server.send_signal(signal.SIGTERM)
        try:
            self.server.wait(60)
        except subprocess.TimeoutExpired:
            self.server.kill()
        self.engine.close()
        self.log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="20,50,80,120,160,200", help="submissions per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each rate step")
    parser.add_argument("--threads", type=int, default=8, help="worker threads of the server")
    parser.add_argument("--burst", type=int, default=200, help="executions submitted at once")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r]

    admin = server_url()
    name, url = fresh_database(admin)
    home = Path(tempfile.mkdtemp(prefix="flowhawk-bench-"))
    bench = Bench(url, home, args.threads)
    try:
        time.sleep(3)
        idle_rss, idle_pss = memory_kb(bench.server.pid)
        phases: list[Phase] = []
        for rate in rates:
            print(f"... {rate:g}/s for {args.seconds:g} s", file=sys.stderr, flush=True)
            ids = bench.at_rate(rate, args.seconds)
            phases.append(bench.phase(f"{rate:g}/s submitted ({rate * 60:,.0f}/min)", ids))
        print(f"... {args.burst} at once", file=sys.stderr, flush=True)
        burst_ids = [bench.submit() for _ in range(args.burst)]
        burst = bench.phase(f"{args.burst} submitted at once", burst_ids)
        print("... 12-tick backfills", file=sys.stderr, flush=True)
        backfills = [(p, *bench.backfill(p)) for p in (1, 4)]
        time.sleep(3)
        after_rss, after_pss = memory_kb(bench.server.pid)
    finally:
        bench.close()
        drop_database(admin, name)

    print()
    print("flowhawk throughput: two-task flow (OutputValues, Log), one `flowhawk server`")
    print(f"({args.threads} worker threads), PostgreSQL on the same {os.cpu_count()}-CPU machine")
    print()
    head = f"{'load':<34} {'done':>9} {'exec/min':>9} {'p50 s':>7} {'p95 s':>7} {'max s':>7}"
    print(head)
    print("-" * len(head))
    for p in [*phases, burst]:
        done = f"{p.finished}/{p.submitted}"
        print(
            f"{p.name:<34} {done:>9} {p.per_minute:>9,.0f} {p.p50:>7.3f} {p.p95:>7.3f}"
            f" {p.worst:>7.3f}"
        )
    sustained = [p for p in phases if p.p95 < 1.0 and p.finished == p.submitted]
    best = max(sustained, key=lambda p: p.per_minute, default=None)
    print()
    print(f"{'measure':<40} {'flowhawk':<26} {'target':<18} others")
    rows = [
        (
            "sustained exec/min with p95 < 1 s",
            f"{best.per_minute:,.0f}/min (p95 {best.p95:.2f} s)" if best else "none",
            ">= 3,000/min",
            BASELINES["rate"],
        ),
        (f"{args.burst} at once", f"{burst.per_minute:,.0f}/min", "", BASELINES["burst"]),
        *[
            (
                f"12-tick backfill, parallelism {par} (CLI wall)",
                f"{wall:.2f} s",
                "< 3 s",
                BASELINES["backfill"] if par == 1 else "",
            )
            for par, wall, _ in backfills
        ],
        (
            "idle server RSS / PSS (before load)",
            f"{idle_rss / 1024:.0f} MB / {idle_pss / 1024:.0f} MB",
            "RSS < 150 MB",
            BASELINES["memory"],
        ),
        (
            "idle server RSS / PSS (after load)",
            f"{after_rss / 1024:.0f} MB / {after_pss / 1024:.0f} MB",
            "",
            "",
        ),
    ]
    for measure, value, target, others in rows:
        print(f"{measure:<40} {value:<26} {target:<18} {others}")
    for par, _, note in backfills:
        if note.startswith("failed"):
            print(f"backfill parallelism {par}: {note}")


if __name__ == "__main__":
    main()
