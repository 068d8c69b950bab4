"""Plain records the repository returns (no behaviour, JSON-friendly)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

TERMINAL_STATES = ("SUCCESS", "WARNING", "FAILED", "KILLED", "CANCELLED")
ACTIVE_STATES = ("CREATED", "QUEUED", "RUNNING", "PAUSED", "KILLING", "RETRYING")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@dataclass
class ExecutionRecord:
    id: str
    namespace: str
    flow_id: str
    flow_revision: int
    state: str
    labels: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    trigger: dict[str, Any] | None = None
    trigger_id: str | None = None
    trigger_date: datetime | None = None
    parent_id: str | None = None
    original_id: str | None = None
    backfill_id: str | None = None
    error: str | None = None
    created_at: datetime | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    seq: int | None = None
    worker_id: str | None = None
    kill_requested: bool = False

    def to_json(self) -> dict[str, Any]:
        """The public JSON shape (CLI --json, API)."""
        return {
            "id": self.id,
            "namespace": self.namespace,
            "flowId": self.flow_id,
            "flowRevision": self.flow_revision,
            "state": self.state,
            "labels": {str(k): str(v) for k, v in (self.labels or {}).items()},
            "inputs": self.inputs or {},
            "outputs": self.outputs or {},
            "trigger": self.trigger,
            "triggerId": self.trigger_id,
            "triggerDate": _iso(self.trigger_date),
            "parentId": self.parent_id,
            "originalId": self.original_id,
            "backfillId": self.backfill_id,
            "error": self.error,
            "createdDate": _iso(self.created_at),
            "startDate": _iso(self.start_date),
            "endDate": _iso(self.end_date),
        }


@dataclass
class TaskRunRecord:
    id: str
    execution_id: str
    path: str
    task_id: str
    state: str
    parent_path: str | None = None
    value: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, Any] | None = None
    error: str | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["executionId"] = data.pop("execution_id")
        data["taskId"] = data.pop("task_id")
        data["parentPath"] = data.pop("parent_path")
        data["startDate"] = _iso(data.pop("start_date"))
        data["endDate"] = _iso(data.pop("end_date"))
        return data


@dataclass
class LogRecord:
    id: int
    execution_id: str
    task_id: str | None
    attempt: int | None
    ts: datetime
    level: str
    message: str
    task_run_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "executionId": self.execution_id,
            "taskId": self.task_id,
            "taskRunId": self.task_run_id,
            "attempt": self.attempt,
            "timestamp": self.ts.isoformat(),
            "level": self.level,
            "message": self.message,
        }


@dataclass
class FlowRecord:
    namespace: str
    id: str
    revision: int
    source: str
    deleted: bool = False
    created_at: datetime | None = None
