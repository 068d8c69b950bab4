"""Issue 5 benchmark: the executions list with 100,000 executions stored, and how long a log
line takes to reach an open server-sent-events stream.

    python bench/api.py [--rows 100000] [--requests 60] [--lines 60]

Uses a fresh database on FLOWHAWK_BENCH_DATABASE_URL (else FLOWHAWK_TEST_DATABASE_URL, else
postgresql://postgres@127.0.0.1:5432/postgres), dropped at the end. Server time is the app's
own ``Server-Timing`` (request in to response headers out); the log latency is measured from
the worker-side ``LogWriter.emit`` to the line arriving in an HTTP client reading the stream,
so it includes the writer's batching, COPY, NOTIFY and the stream's wake-up.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import conninfo
from psycopg.types.json import Jsonb

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from flowhawk.config import Settings  # noqa: E402
from flowhawk.engine.logs import LogWriter  # noqa: E402
from flowhawk.engine.service import Engine  # noqa: E402
from flowhawk.server.app import ServerThread  # noqa: E402
from flowhawk.store.ids import new_id  # noqa: E402

STATES = (
    ["SUCCESS"] * 80
    + ["FAILED"] * 12
    + ["WARNING"] * 4
    + ["KILLED"] * 2
    + ["RUNNING"] * 1
    + ["CREATED"]
)
FLOW = """id: f{n}
namespace: bench.ns{ns}
tasks:
  - id: log
    type: io.kestra.plugin.core.log.Log
    message: hi
"""


def server_url() -> str:
    return (
        os.environ.get("FLOWHAWK_BENCH_DATABASE_URL")
        or os.environ.get("FLOWHAWK_TEST_DATABASE_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres"
    )


def with_db(url: str, name: str) -> str:
    info = conninfo.conninfo_to_dict(url)
    info["dbname"] = name
    return conninfo.make_conninfo(**info)


def fill(engine: Engine, rows: int) -> float:
    """COPY ``rows`` executions over 20 flows and 90 days; returns seconds taken."""
    for n in range(20):
        engine.deploy_source(FLOW.format(n=n, ns=n % 5))
    rng = random.Random(5)
    now = datetime.now(UTC)
    started = time.perf_counter()
    with psycopg.connect(engine.repo.url) as conn:
        with conn.cursor().copy(
            "COPY executions (id, namespace, flow_id, flow_revision, state, labels, inputs,"
            " created_at, start_date, end_date, trigger_id, trigger_date, original_id)"
            " FROM STDIN"
        ) as copy:
            for i in range(rows):
                n = rng.randrange(20)
                created = now - timedelta(seconds=rng.uniform(0, 90 * 86400))
                state = rng.choice(STATES)
                labels = {"team": f"t{n % 3}"}
                if rng.random() < 0.3:
                    labels["backfill"] = "true"
                execution_id = new_id()
                ended = created + timedelta(seconds=rng.uniform(0.2, 30))
                copy.write_row(
                    (
                        execution_id,
                        f"bench.ns{n % 5}",
                        f"f{n}",
                        1,
                        state,
                        Jsonb(labels),
                        Jsonb({"n": i}),
                        created,
                        created,
                        ended if state not in ("RUNNING", "CREATED") else None,
                        "daily" if labels.get("backfill") else None,
                        created.replace(hour=6, minute=0, second=0, microsecond=0),
                        execution_id,
                    )
                )
        conn.execute("ANALYZE executions")
        conn.commit()
    return time.perf_counter() - started


def timed(
    client: httpx.Client, path: str, params: Any = None
) -> tuple[float, dict[str, Any] | None]:
    response = client.get(path, params=params)
    response.raise_for_status()
    header = response.headers["server-timing"]
    duration = float(header.split("dur=")[1])
    body = (
        response.json() if response.headers["content-type"].startswith("application/json") else None
    )
    return duration, body


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def bench_lists(client: httpx.Client, requests: int) -> list[tuple[str, list[float]]]:
    cases: list[tuple[str, str, Any]] = [
        ("first page, no filter", "/api/v1/executions", {}),
        ("flow filter", "/api/v1/executions", {"namespace": "bench.ns3", "flowId": "f3"}),
        ("state=FAILED", "/api/v1/executions", {"state": "FAILED"}),
        ("state=RUNNING (rare)", "/api/v1/executions", {"state": "RUNNING"}),
        ("label backfill:true", "/api/v1/executions", {"label": "backfill:true"}),
        (
            "last 7 days",
            "/api/v1/executions",
            {"startDate": (datetime.now(UTC) - timedelta(days=7)).isoformat()},
        ),
        (
            "flow + state + label",
            "/api/v1/executions",
            {
                "flowId": "f7",
                "namespace": "bench.ns2",
                "state": "SUCCESS",
                "label": "backfill:true",
            },
        ),
        ("UI list page (HTML)", "/ui/executions", {}),
        ("UI list, label filter", "/ui/executions", {"label": "backfill:true"}),
        ("dashboard (90 days)", "/", {"days": 90}),
    ]
    results = []
    for name, path, params in cases:
        timed(client, path, params)  # warm
        durations = [timed(client, path, params)[0] for _ in range(requests)]
        results.append((name, durations))
    # keyset paging: walk 40 pages deep
    durations = []
    cursor = None
    for _ in range(40):
        params = {"limit": 50, **({"cursor": cursor} if cursor else {})}
        duration, body = timed(client, "/api/v1/executions", params)
        durations.append(duration)
        assert body is not None
        cursor = body["nextCursor"]
    results.append(("pages 1-40 via cursor", durations))
    return results


def bench_sse(engine: Engine, base: str, lines: int) -> list[float]:
    """Latency of each line from ``LogWriter.emit`` to arrival on an open stream (ms)."""
    execution = engine.repo.create_execution(
        namespace="bench.ns0", flow_id="f0", flow_revision=1, state="RUNNING"
    )
    sent: dict[str, float] = {}
    latencies: list[float] = []
    ready = threading.Event()
    done = threading.Event()

    def reader() -> None:
        with (
            httpx.Client(timeout=60) as client,
            client.stream(
                "GET", f"{base}/api/v1/executions/{execution.id}/logs/follow"
            ) as response,
        ):
            ready.set()
            event = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "log":
                    message = json.loads(line[6:])["message"]
                    if message in sent:
                        latencies.append((time.perf_counter() - sent[message]) * 1000)
                    if len(latencies) >= lines:
                        done.set()
                        return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    ready.wait(10)
    time.sleep(0.5)
    writer = LogWriter(engine.repo)
    for i in range(lines):
        message = f"line {i} {uuid.uuid4().hex[:6]}"
        sent[message] = time.perf_counter()
        writer.emit(execution.id, None, "bench", 1, "INFO", message)
        time.sleep(0.1)
    done.wait(30)
    writer.close()
    engine.repo.set_execution_state(execution.id, "SUCCESS")
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--lines", type=int, default=60)
    args = parser.parse_args()

    base_url = server_url()
    name = f"fh_bench_api_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        engine = Engine(Settings(database_url=with_db(base_url, name)))
        copy_seconds = fill(engine, args.rows)
        print(f"{args.rows:,} executions stored with COPY in {copy_seconds:.1f} s")
        server = ServerThread(engine).start()
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                lists = bench_lists(client, args.requests)
            latencies = bench_sse(engine, server.url, args.lines)
        finally:
            server.stop()
            engine.close()
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    print()
    print(f"{'executions list (server time, ms)':<34} {'p50':>8} {'p95':>8} {'max':>8}  target")
    for label, durations in lists:
        print(
            f"{label:<34} {statistics.median(durations):8.1f} {percentile(durations, 0.95):8.1f}"
            f" {max(durations):8.1f}  < 300"
        )
    print()
    print(f"{'log line to open stream (ms)':<34} {'p50':>8} {'p95':>8} {'max':>8}  target")
    if latencies:
        print(
            f"{f'{len(latencies)} lines, 100 ms apart':<34} {statistics.median(latencies):8.1f}"
            f" {percentile(latencies, 0.95):8.1f} {max(latencies):8.1f}  < 1000"
        )
    else:
        print("no line arrived")


if __name__ == "__main__":
    main()
