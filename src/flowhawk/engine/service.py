"""What the CLI and the API ask of the engine: deploy, start, run, restart, kill.

One ``Engine`` per process holds the settings, the repository and an executor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from flowhawk.config import Settings
from flowhawk.engine.executor import Executor
from flowhawk.engine.logs import ConsoleSink
from flowhawk.errors import FlowhawkError
from flowhawk.flow.inputs import resolve_inputs, secret_inputs
from flowhawk.flow.loader import load_flow, read_flow_file
from flowhawk.flow.model import Flow
from flowhawk.store.db import database_url
from flowhawk.store.records import ExecutionRecord
from flowhawk.store.repository import Repository


class NotFound(FlowhawkError):
    pass


@dataclass
class Started:
    execution: ExecutionRecord
    flow: Flow
    secrets: dict[str, Any]


def trigger_variables(flow: Flow, trigger_id: str | None, date: datetime) -> dict[str, Any]:
    """trigger.date / next / previous for a tick of ``trigger_id`` (or the first Schedule)."""
    from flowhawk.engine.ticks import CronSchedule

    triggers = [t for t in (flow.triggers or []) if getattr(t, "cron", None)]
    chosen = next((t for t in triggers if t.id == trigger_id), None) if trigger_id else None
    if chosen is None and triggers and not trigger_id:
        chosen = triggers[0]
    result: dict[str, Any] = {"date": date.isoformat()}
    if chosen is not None:
        schedule = CronSchedule(
            chosen.cron, chosen.timezone or "UTC", bool(getattr(chosen, "withSeconds", False))
        )
        local = date.astimezone(schedule.tz)
        result["date"] = local.isoformat()
        result["next"] = schedule.next_after(local).isoformat()
        result["previous"] = schedule.previous_before(local).isoformat()
        result["id"] = chosen.id
    return result


class Engine:
    def __init__(self, settings: Settings, *, repo: Repository | None = None) -> None:
        self.settings = settings
        self.repo = repo or Repository(database_url(settings))

    def close(self) -> None:
        self.repo.close()

    # -- flows ----------------------------------------------------------------------
    def parse(self, source: str, filename: str = "<flow>") -> Flow:
        return load_flow(source, filename, self.settings.plugin_defaults)

    def deploy_source(self, source: str, filename: str = "<flow>") -> tuple[Flow, int, bool]:
        flow = self.parse(source, filename)
        revision, changed = self.repo.deploy_flow(flow.namespace, flow.id, source)
        flow.revision = revision
        return flow, revision, changed

    def deploy_file(self, path: Path) -> tuple[Flow, int, bool]:
        return self.deploy_source(read_flow_file(path), str(path))

    def flow(self, namespace: str, flow_id: str) -> tuple[Flow, int]:
        record = self.repo.get_flow(namespace, flow_id)
        if record is None:
            raise NotFound(f"flow {namespace}/{flow_id} not found (deploy it first)")
        flow = self.parse(record.source, f"{namespace}/{flow_id}")
        flow.revision = record.revision
        return flow, record.revision

    # -- executions -----------------------------------------------------------------
    def create_execution(
        self,
        flow: Flow,
        revision: int,
        *,
        inputs: dict[str, Any] | None = None,
        labels: dict[str, str] | None = None,
        trigger_id: str | None = None,
        trigger_date: datetime | None = None,
        state: str = "CREATED",
        backfill_id: str | None = None,
    ) -> Started:
        """Validate inputs, then store a new execution (nothing is created when inputs fail)."""
        given: dict[str, Any] = {}
        all_labels: dict[str, str] = dict(flow.labels or {})
        trigger = None
        if trigger_id:
            found = next((t for t in flow.triggers or [] if t.id == trigger_id), None)
            if found is None:
                known = ", ".join(t.id for t in flow.triggers or []) or "none"
                raise FlowhawkError(
                    f"flow {flow.namespace}/{flow.id} has no trigger `{trigger_id}` (known: {known})"
                )
            given.update(found.inputs or {})
            all_labels.update({str(k): str(v) for k, v in (found.labels or {}).items()})
        given.update(inputs or {})
        all_labels.update(labels or {})
        resolved = resolve_inputs(flow, given)
        secret_ids = secret_inputs(flow)
        secrets = {k: v for k, v in resolved.items() if k in secret_ids}
        stored_inputs = {
            k: ("******" if k in secret_ids and v is not None else v) for k, v in resolved.items()
        }
        if trigger_date is not None:
            trigger = trigger_variables(flow, trigger_id, trigger_date)
        execution = self.repo.create_execution(
            namespace=flow.namespace,
            flow_id=flow.id,
            flow_revision=revision,
            state=state,
            labels=all_labels,
            inputs=stored_inputs,
            trigger=trigger,
            trigger_id=trigger_id or (trigger or {}).get("id"),
            trigger_date=trigger_date,
            backfill_id=backfill_id,
        )
        if any(v is not None for v in secrets.values()):
            self.repo.save_secret_inputs(execution.id, secrets)
        return Started(execution, flow, secrets)

    def run_to_end(self, started: Started, console: ConsoleSink | None = None) -> str:
        executor = Executor(self.repo, self.settings, console=console)
        try:
            return executor.run(started.execution.id, secret_inputs=started.secrets)
        finally:
            executor.close()

    def execution(self, execution_id: str) -> ExecutionRecord:
        found = self.repo.get_execution(execution_id)
        if found is None:
            raise NotFound(f"execution {execution_id} not found")
        return found

    def prepare_restart(self, execution_id: str) -> ExecutionRecord:
        """Make a failed execution runnable again from its failed task (same inputs, trigger)."""
        execution = self.execution(execution_id)
        if execution.state not in ("FAILED", "KILLED", "WARNING", "CANCELLED"):
            raise FlowhawkError(
                f"execution {execution_id} is {execution.state}; only FAILED, KILLED, WARNING or"
                " CANCELLED executions can be restarted"
            )
        runs = self.repo.task_runs(execution_id)
        redo = [r.path for r in runs if r.state not in ("SUCCESS", "SKIPPED")]
        self.repo.delete_task_runs(execution_id, redo)
        self.repo.reset_for_restart(execution_id)
        return self.execution(execution_id)
