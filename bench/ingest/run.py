"""Issue 4 benchmark: loading taxi months four ways, on the same PostgreSQL, same files.

    python bench/ingest/run.py [--rows 1000000] [--months 12] [--repeat 3]
                               [--server postgresql://postgres@127.0.0.1:5432/postgres]

Synthetic green months (``flowhawk.taxi.synth``, cached under ``bench/data/``) are served
by a local HTTP server. For month 1 and month 12 of a 12-month load it times, each in a
fresh process:

* floor:    ``curl | gunzip | psql \\copy`` into an UNLOGGED table with no index;
* course:   ``flowhawk run flows/postgres_taxi_scheduled.yaml`` (download, gunzip to disk,
            COPY into staging, UPDATE unique_row_id, MERGE into main);
* pandas:   ``read_csv(chunksize=100_000)`` + ``to_sql`` (the course's other method). Its
            cost does not depend on the table, so month 12 runs after months 2..11 were
            copied in with SQL instead of taking ~10 minutes to append them;
* flowhawk: ``flowhawk run flows/taxi_fast.yaml``.

Best of ``--repeat`` for the floor and flowhawk (re-running a month is idempotent there);
once for the course's flow and pandas (their re-runs do different work). Peak resident
memory is sampled every 20 ms: the main process, and the largest child (the reader
subprocess for flowhawk). Then the 12-month backfill of ``taxi_fast`` with
``--parallelism 1`` and ``2`` (wall time of ``flowhawk backfill ... --wait``).

Results: ``bench/results/ingest.json`` (ignored by git); ``bench/ingest/plot.py`` turns it
into ``bench/results/ingest.png`` and ``bench/results/ingest.md``.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import conninfo

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "bench" / "data"
RESULTS = ROOT / "bench" / "results"
YEAR = 2019
sys.path.insert(0, str(ROOT / "src"))

from flowhawk.taxi.layout import layout_for  # noqa: E402
from flowhawk.taxi.synth import write_month  # noqa: E402

LAYOUT = layout_for("green")


# -- set-up ------------------------------------------------------------------------------
def make_data(rows: int, months: int) -> Path:
    folder = DATA / f"green-{rows}"
    for month in range(1, months + 1):
        path = folder / "green" / (LAYOUT.filename(YEAR, month) + ".gz")
        if not path.exists():
            result = write_month(path, "green", YEAR, month, rows)
            print(f"  made {path.name}: {rows:,} rows in {result.seconds:.1f}s", flush=True)
    return folder


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(folder: Path) -> tuple[str, http.server.ThreadingHTTPServer]:
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def with_db(server_url: str, name: str) -> str:
    info = conninfo.conninfo_to_dict(server_url)
    info["dbname"] = name
    return conninfo.make_conninfo(**info)


def fresh_db(server_url: str, name: str) -> str:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_db(server_url, name)


def jdbc(url: str) -> dict[str, str]:
    info = conninfo.conninfo_to_dict(url)
    out = {
        "url": f"jdbc:postgresql://{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{info['dbname']}"
    }
    if info.get("user"):
        out["username"] = info["user"]
    if info.get("password"):
        out["password"] = info["password"]
    return out


def config_file(folder: Path, state_url: str, target_url: str, streams: int | None = None) -> Path:
    path = folder / f"flowhawk-{conninfo.conninfo_to_dict(target_url)['dbname']}.yaml"
    values = json.dumps(jdbc(target_url))
    text = (
        f"database: {json.dumps(state_url)}\nstorage: {json.dumps(str(folder / 'storage'))}\n"
        f"pluginDefaults:\n  - type: io.kestra.plugin.jdbc.postgresql\n    values: {values}\n"
    )
    if streams is not None:
        text += f"  - type: flowhawk.taxi.Load\n    values: {{streams: {streams}}}\n"
    path.write_text(text)
    return path


# -- measuring ---------------------------------------------------------------------------
def measure(
    cmd: list[str], env: dict[str, str] | None = None, stdin_shell: bool = False
) -> dict[str, Any]:
    """Wall time of ``cmd`` and the peak RSS of its main process and of its largest child."""
    started = time.perf_counter()
    proc = psutil.Popen(
        cmd if not stdin_shell else ["/bin/sh", "-c", cmd[0]],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    peak_main = peak_child = 0
    while proc.poll() is None:
        try:
            peak_main = max(peak_main, proc.memory_info().rss)
            for child in proc.children(recursive=True):
                try:
                    peak_child = max(peak_child, child.memory_info().rss)
                except psutil.Error:
                    pass
        except psutil.Error:
            pass
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{err[-3000:]}")
    return {
        "seconds": seconds,
        "rss_main_mb": peak_main / 2**20,
        "rss_child_mb": peak_child / 2**20,
    }


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    top = min(runs, key=lambda r: r["seconds"])
    return {**top, "runs": [round(r["seconds"], 3) for r in runs]}


def flowhawk_cmd(config: Path, flow: str, month: int, base: str) -> list[str]:
    return [
        sys.executable, "-m", "flowhawk", "--config", str(config), "run", str(ROOT / "flows" / flow),
        "--trigger-date", f"{YEAR}-{month:02d}-01T09:00:00Z", "-i", "taxi=green", "-i", f"base_url={base}",
    ]  # fmt: skip


def floor_once(url: str, base: str, month: int) -> dict[str, Any]:
    cols = ", ".join(f"{n} {t}" for n, t in LAYOUT.table_columns)
    file_url = f"{base}/green/{LAYOUT.filename(YEAR, month)}.gz"
    copy = (
        f"\\copy floor ({', '.join(LAYOUT.csv_columns)}) FROM STDIN WITH (FORMAT csv, HEADER true)"
    )
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS floor; CREATE UNLOGGED TABLE floor ({cols})")
    shell = f"curl -sf '{file_url}' | gunzip -c | psql '{url}' -q -c \"{copy}\""
    return measure([shell], stdin_shell=True)


def pandas_month(url: str, base: str, month: int) -> dict[str, Any]:
    script = (
        "import sys, pandas as pd, sqlalchemy as sa\n"
        "engine = sa.create_engine(sys.argv[1])\n"
        "for df in pd.read_csv(sys.argv[2], chunksize=100_000, low_memory=False,\n"
        "        parse_dates=['lpep_pickup_datetime', 'lpep_dropoff_datetime']):\n"
        "    df.to_sql('green_tripdata', engine, if_exists='append', index=False)\n"
    )
    info = conninfo.conninfo_to_dict(url)
    sa_url = f"postgresql+psycopg://{info.get('user', 'postgres')}@{info.get('host')}:{info.get('port', 5432)}/{info['dbname']}"
    return measure(
        [sys.executable, "-c", script, sa_url, f"{base}/green/{LAYOUT.filename(YEAR, month)}.gz"]
    )


def compile_sources() -> None:
    """Byte-compile flowhawk as ``pip install`` does, so that a checkout installed with
    ``pip install -e`` under PYTHONDONTWRITEBYTECODE=1 does not recompile every module in
    every timed process (0.15 s each on the reference machine)."""
    import compileall

    compileall.compile_dir(str(ROOT / "src" / "flowhawk"), quiet=1)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    compile_sources()
    work = Path(tempfile.mkdtemp(prefix="flowhawk-bench-"))
    env = {**os.environ, "FLOWHAWK_HOME": str(work / "home")}
    print(f"data: {args.months} green months of {args.rows:,} rows", flush=True)
    base, http = serve(make_data(args.rows, args.months))
    last = args.months
    results: dict[str, Any] = {"rows": args.rows, "months": args.months, "repeat": args.repeat}
    try:
        # floor and flowhawk alternate, so that both see the same background load
        print("floor and flowhawk ...", flush=True)
        floor_db = fresh_db(args.server, "bench_floor")
        state = fresh_db(args.server, "bench_state")
        target = fresh_db(args.server, "bench_fast")
        cfg = config_file(work, state, target)
        subprocess.run([sys.executable, "-m", "flowhawk", "--config", str(cfg), "flow", "deploy", str(ROOT / "flows" / "taxi_fast.yaml")], check=True, env=env, capture_output=True)  # fmt: skip
        floors: dict[str, Any] = {}
        fast: dict[str, Any] = {}
        for month in [1] + list(range(2, last)) + [last]:
            repeat = args.repeat if month in (1, last) else 1
            floor_runs, fast_runs = [], []
            for _ in range(repeat):
                if month in (1, last):
                    floor_runs.append(floor_once(floor_db, base, month))
                fast_runs.append(measure(flowhawk_cmd(cfg, "taxi_fast.yaml", month, base), env))
            if month in (1, last):
                floors[f"month{month}"] = best(floor_runs)
                fast[f"month{month}"] = best(fast_runs)
                print(
                    f"  month {month}: floor {floors[f'month{month}']['runs']}, flowhawk {fast[f'month{month}']['runs']}",
                    flush=True,
                )
        results["floor"] = floors
        results["flowhawk"] = fast

        print("course flow ...", flush=True)
        target = fresh_db(args.server, "bench_course")
        cfg = config_file(work, state, target)
        course: dict[str, Any] = {}
        for month in range(1, last + 1):
            run = measure(flowhawk_cmd(cfg, "postgres_taxi_scheduled.yaml", month, base), env)
            course[f"month{month}"] = run
            print(f"  month {month}: {run['seconds']:.1f}s", flush=True)
        results["course"] = {
            "month1": course["month1"],
            f"month{last}": course[f"month{last}"],
            "all": [round(course[f"month{m}"]["seconds"], 2) for m in range(1, last + 1)],
        }

        if not args.skip_pandas:
            print("pandas ...", flush=True)
            target = fresh_db(args.server, "bench_pandas")
            pandas: dict[str, Any] = {"month1": pandas_month(target, base, 1)}
            with psycopg.connect(target, autocommit=True) as conn:
                for _month in range(2, last):
                    conn.execute(
                        "INSERT INTO green_tripdata SELECT * FROM green_tripdata LIMIT %s",
                        (args.rows,),
                    )
            pandas[f"month{last}"] = pandas_month(target, base, last)
            results["pandas"] = pandas

        if not args.skip_backfill:
            # the default (two COPY streams a load), then one stream a load, where parallelism
            # is the only way to the second core
            for streams, parallelism in ((None, 1), (None, 2), (1, 1), (1, 2)):
                key = f"backfill_p{parallelism}" + (f"_s{streams}" if streams else "")
                print(
                    f"backfill, parallelism {parallelism}, streams {streams or 'default'} ...",
                    flush=True,
                )
                state = fresh_db(args.server, f"bench_state_{key}")
                target = fresh_db(args.server, f"bench_{key}")
                cfg = config_file(work, state, target, streams)
                subprocess.run([sys.executable, "-m", "flowhawk", "--config", str(cfg), "flow", "deploy", str(ROOT / "flows" / "taxi_fast.yaml")], check=True, env=env, capture_output=True)  # fmt: skip
                cmd = [
                    sys.executable, "-m", "flowhawk", "--config", str(cfg), "backfill", "create", "zoomcamp/taxi_fast",
                    "--start", f"{YEAR}-01-01", "--end", f"{YEAR}-{last:02d}-01", "--trigger", "green_schedule",
                    "-i", f"base_url={base}", "--parallelism", str(parallelism), "--wait",
                ]  # fmt: skip
                results[key] = measure(cmd, env)
                with psycopg.connect(target) as conn:
                    row = conn.execute(
                        "SELECT count(*), count(DISTINCT filename) FROM green_tripdata"
                    ).fetchone()
                assert row == (args.rows * last, last), f"backfill loaded {row}"
    finally:
        http.shutdown()
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep_databases:
            with psycopg.connect(args.server, autocommit=True) as conn:
                for (name,) in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'bench\\_%'"
                ).fetchall():
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return results


def summary_lines(results: dict[str, Any]) -> list[str]:
    last = f"month{results['months']}"
    lines = [
        f"{'method':<10} {'month':<8} {'seconds':>8} {'rows/s':>10} {'x floor':>8} {'RSS MB':>7} {'child MB':>8}"
    ]
    for method in ("floor", "course", "pandas", "flowhawk"):
        if method not in results:
            continue
        for month in ("month1", last):
            r = results[method][month]
            ratio = r["seconds"] / results["floor"][month]["seconds"]
            lines.append(
                f"{method:<10} {month:<8} {r['seconds']:>8.2f} {results['rows'] / r['seconds']:>10,.0f} "
                f"{ratio:>8.2f} {r['rss_main_mb']:>7.0f} {r['rss_child_mb']:>8.0f}"
            )
    for suffix, what in (("", "default streams"), ("_s1", "streams 1")):
        for p in (1, 2):
            if f"backfill_p{p}{suffix}" in results:
                lines.append(
                    f"backfill of {results['months']} months, parallelism {p}, {what}: "
                    f"{results[f'backfill_p{p}{suffix}']['seconds']:.1f}s"
                )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--server",
        default=os.environ.get(
            "FLOWHAWK_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="a PostgreSQL server URL; bench_* databases are created there",
    )
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument("--skip-backfill", action="store_true")
    parser.add_argument("--keep-databases", action="store_true", help="keep the bench_* databases")
    args = parser.parse_args()
    if args.months < 2:
        parser.error("--months must be at least 2")
    started = time.perf_counter()
    results = run_benchmark(args)
    results["total_seconds"] = time.perf_counter() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(results, indent=2))
    print("\n".join(summary_lines(results)))
    print(f"total {results['total_seconds']:.0f}s; results in {RESULTS / 'ingest.json'}")
    subprocess.run([sys.executable, str(Path(__file__).with_name("plot.py"))], check=True)


if __name__ == "__main__":
    main()
