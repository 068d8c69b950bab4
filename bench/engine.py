"""Issue 2 benchmark: `flowhawk run flows/hello.yaml` wall time, and engine overhead per task.

    python bench/engine.py [--runs 5]

Uses the embedded PostgreSQL (initialised once before timing) unless FLOWHAWK_DATABASE_URL is set.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def time_cli(runs: int) -> list[float]:
    times = []
    cmd = [sys.executable, "-m", "flowhawk", "run", str(ROOT / "flows" / "hello.yaml")]
    subprocess.run(cmd, check=True, capture_output=True)  # warm: DB initialised, flow deployed
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def flow_with(n: int) -> str:
    tasks = "\n".join(
        f'  - id: t{i}\n    type: io.kestra.plugin.core.debug.Return\n    format: "{{{{ {i} }}}}"'
        for i in range(n)
    )
    return f"id: overhead{n}\nnamespace: bench\ntasks:\n{tasks}\n"


def per_task_overhead() -> tuple[float, float, float]:
    from flowhawk.config import load_settings
    from flowhawk.engine.service import Engine

    engine = Engine(load_settings())
    results = {}
    for n in (1, 201):
        flow, revision, _ = engine.deploy_source(flow_with(n), f"overhead{n}.yaml")
        best = float("inf")
        for _ in range(3):
            started = engine.create_execution(flow, revision)
            t0 = time.perf_counter()
            state = engine.run_to_end(started)
            best = min(best, time.perf_counter() - t0)
            assert state == "SUCCESS", state
        results[n] = best
    engine.close()
    return results[1], results[201], (results[201] - results[1]) / 200


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("FLOWHAWK_HOME", str(Path(tempfile.gettempdir()) / "flowhawk-bench"))
    times = time_cli(args.runs)
    one, many, per_task = per_task_overhead()
    rows = [
        (
            "flowhawk run flows/hello.yaml (fresh process)",
            f"{min(times):.2f} s best, {statistics.median(times):.2f} s median",
            "< 1.5 s",
            f"{min(times) / 1.5:.2f}x of target",
        ),
        (
            "engine overhead per trivial task",
            f"{per_task * 1000:.2f} ms",
            "< 5 ms",
            f"{per_task * 1000 / 5:.2f}x of target",
        ),
        ("  (1-task flow / 201-task flow in-process)", f"{one:.3f} s / {many:.3f} s", "", ""),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'flowhawk':<28} {'target':<8} ratio")
    for name, value, target, ratio in rows:
        print(f"{name:<{width}}  {value:<28} {target:<8} {ratio}")


if __name__ == "__main__":
    main()
