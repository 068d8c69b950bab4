"""Draw ``bench/results/ingest.json`` as ``bench/results/ingest.png`` and ``ingest.md``.

python bench/ingest/plot.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
METHODS = (("floor", "floor (COPY, unlogged)"), ("flowhawk", "flowhawk taxi_fast"),
           ("course", "course flow (MERGE)"), ("pandas", "pandas to_sql"))  # fmt: skip


def table(results: dict[str, Any]) -> str:
    last = f"month{results['months']}"
    rows = [
        f"Green months of {results['rows']:,} synthetic rows, served over local HTTP; wall time of a "
        f"fresh process, best of {results['repeat']} for floor and flowhawk.",
        "",
        "| method | month | seconds | rows/s | × floor | peak RSS MB (main / child) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for key, label in METHODS:
        if key not in results:
            continue
        for month in ("month1", last):
            r = results[key][month]
            ratio = r["seconds"] / results["floor"][month]["seconds"]
            rows.append(
                f"| {label} | {month.replace('month', '')} | {r['seconds']:.2f} | "
                f"{results['rows'] / r['seconds']:,.0f} | {ratio:.2f} | "
                f"{r['rss_main_mb']:.0f} / {r['rss_child_mb']:.0f} |"
            )
    backfills = [
        ("", "two COPY streams a load (the default)"),
        ("_s1", "one COPY stream a load (`streams: 1`)"),
    ]
    if any(f"backfill_p1{suffix}" in results for suffix, _ in backfills):
        rows += [
            "",
            f"Backfill of {results['months']} months (`flowhawk backfill create ... --wait`), wall time:",
            "",
            "| loads | `--parallelism 1` | `--parallelism 2` | parallelism 2 / 1 |",
            "|---|---:|---:|---:|",
        ]
        for suffix, what in backfills:
            one, two = results.get(f"backfill_p1{suffix}"), results.get(f"backfill_p2{suffix}")
            if one and two:
                rows.append(
                    f"| {what} | {one['seconds']:.1f} s | {two['seconds']:.1f} s | "
                    f"{two['seconds'] / one['seconds']:.2f} |"
                )
    return "\n".join(rows) + "\n"


def plot(results: dict[str, Any], out: Path) -> None:
    last = f"month{results['months']}"
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = [label for key, label in METHODS if key in results]
    keys = [key for key, _ in METHODS if key in results]
    width = 0.38
    xs = range(len(keys))
    for offset, month, colour in ((-width / 2, "month1", "#4C72B0"), (width / 2, last, "#DD8452")):
        values = [results[k][month]["seconds"] for k in keys]
        bars = left.bar(
            [x + offset for x in xs],
            values,
            width,
            label=month.replace("month", "month "),
            color=colour,
        )
        left.bar_label(bars, fmt="%.1f", fontsize=8)
    left.set_xticks(list(xs), labels, rotation=15, fontsize=8)
    left.set_ylabel("seconds (lower is better)")
    left.set_title(f"One month of {results['rows']:,} rows")
    left.legend()
    if "course" in results and "all" in results["course"]:
        months = range(1, len(results["course"]["all"]) + 1)
        right.plot(months, results["course"]["all"], marker="o", label="course flow (MERGE)")
    right.axhline(
        results["flowhawk"]["month1"]["seconds"],
        color="#55A868",
        linestyle="--",
        label="flowhawk, month 1",
    )
    right.axhline(
        results["flowhawk"][last]["seconds"],
        color="#55A868",
        label=f"flowhawk, {last.replace('month', 'month ')}",
    )
    right.axhline(results["floor"]["month1"]["seconds"], color="grey", linestyle=":", label="floor")
    right.set_xlabel("month of the load (main table grows)")
    right.set_ylabel("seconds")
    right.set_title("Cost as the main table grows")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> int:
    source = RESULTS / "ingest.json"
    if not source.exists():
        print(f"{source} not found: run bench/ingest/run.py first", file=sys.stderr)
        return 1
    results = json.loads(source.read_text())
    plot(results, RESULTS / "ingest.png")
    (RESULTS / "ingest.md").write_text(table(results))
    print(f"wrote {RESULTS / 'ingest.png'} and {RESULTS / 'ingest.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
