"""Helpers of the end-to-end tests: an Engine on a test database, running flows, results."""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from flowhawk.config import Settings
from flowhawk.engine.service import Engine
from flowhawk.store.records import ExecutionRecord, LogRecord, TaskRunRecord

# -- helpers shared with the other end-to-end modules ------------------------------------


def make_engine(database_url: str, home: Path) -> Engine:
    """An Engine on ``database_url`` whose working dirs and storage live under ``home``."""
    os.environ["FLOWHAWK_HOME"] = str(home)
    return Engine(Settings(database_url=database_url, storage_path=home / "storage"))


@dataclass
class Result:
    state: str
    execution: ExecutionRecord
    runs: dict[str, TaskRunRecord]
    logs: list[LogRecord]

    def log_text(self) -> str:
        return "\n".join(f"{r.level} {r.task_id} {r.message}" for r in self.logs)

    def outputs(self, path: str) -> dict[str, Any]:
        return self.runs[path].outputs or {}


def collect(engine: Engine, execution_id: str) -> Result:
    execution = engine.execution(execution_id)
    runs = {r.path: r for r in engine.repo.task_runs(execution_id)}
    return Result(execution.state, execution, runs, engine.repo.logs(execution_id))


def run_flow(
    engine: Engine,
    source: str,
    *,
    inputs: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    trigger_id: str | None = None,
    trigger_date: datetime | None = None,
) -> Result:
    """Deploy ``source`` (dedented), create an execution, run it to its end."""
    flow, revision, _ = engine.deploy_source(textwrap.dedent(source))
    started = engine.create_execution(
        flow,
        revision,
        inputs=inputs,
        labels=labels,
        trigger_id=trigger_id,
        trigger_date=trigger_date,
    )
    engine.run_to_end(started)
    return collect(engine, started.execution.id)


def overlaps(a: TaskRunRecord, b: TaskRunRecord) -> bool:
    assert a.start_date and a.end_date and b.start_date and b.end_date
    return a.start_date < b.end_date and b.start_date < a.end_date
