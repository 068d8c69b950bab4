"""Shapes shared by the API and the pages: inputs for forms, triggers, files, backfills."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import HTTPException

from flowhawk.engine.service import Engine
from flowhawk.flow.model import Flow, ScheduleTrigger
from flowhawk.store.files import FileStorage, StorageError


def inputs_json(flow: Flow) -> list[dict[str, Any]]:
    """Each input's declaration for forms; a SECRET's default is never shown."""
    result = []
    for spec in flow.inputs:
        data = spec.model_dump(exclude_none=True, exclude_defaults=False)
        data = {k: v for k, v in data.items() if v not in (None, [], {}) or k == "values"}
        if spec.type == "SECRET":
            for key in ("defaults", "prefill"):
                if key in data:
                    data[key] = "******"
        result.append(data)
    return result


def trigger_spec(trigger: ScheduleTrigger) -> dict[str, Any]:
    return {
        "id": trigger.id,
        "cron": trigger.cron,
        "timezone": trigger.timezone or "UTC",
        "inputs": dict(trigger.inputs or {}),
        "labels": {str(k): str(v) for k, v in (trigger.labels or {}).items()},
        "disabled": bool(trigger.disabled),
    }


def files_json(engine: Engine, execution_id: str) -> list[dict[str, Any]]:
    storage = FileStorage(engine.settings.storage_path)
    result = []
    for row in engine.repo.files(execution_id):
        try:
            present = storage.path_for(row["uri"]).is_file()
        except StorageError:
            present = False
        result.append(
            {
                "taskId": row["task_id"],
                "uri": row["uri"],
                "name": row["uri"].rsplit("/", 1)[-1],
                "size": row["size"],
                "present": present,
                "created": row["created_at"].isoformat() if row["created_at"] else None,
            }
        )
    return result


def backfill_record(engine: Engine, backfill_id: str) -> Any:
    from flowhawk.store.scheduling import SchedulingStore

    if not backfill_id or "\x00" in backfill_id or len(backfill_id) > 200:
        raise HTTPException(404, f"backfill {backfill_id} not found")
    record = SchedulingStore(engine.repo).get_backfill(backfill_id)
    if record is None:
        raise HTTPException(404, f"backfill {backfill_id} not found")
    return record


def backfill_json(engine: Engine, backfill_id: str, *, ticks: bool = False) -> dict[str, Any]:
    """``describe()`` of the backfill; with ``ticks``, each tick's execution and state."""
    from flowhawk.engine import backfill

    backfill_record(engine, backfill_id)
    record, progress = backfill.status(engine.repo, backfill_id)
    data = backfill.describe(record, progress)
    if ticks:
        rows = engine.repo.list_executions(backfill_id=backfill_id)
        rows.sort(key=lambda r: (r.trigger_date or datetime.min, r.id))
        zone = backfill._zone(record)
        data["executions"] = [
            {
                "id": r.id,
                "tick": r.trigger_date.astimezone(zone).isoformat() if r.trigger_date else None,
                "state": r.state,
            }
            for r in rows
        ]
    return data
