"""Queries of the data and dashboard pages that no other module answers."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fastapi import HTTPException

from flowhawk.engine.service import Engine
from flowhawk.errors import FlowhawkError


def executions_per_day(engine: Engine, days: int) -> dict[str, Any]:
    """Executions created per UTC day and state over the last ``days`` days (today included)."""
    today = datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    since = datetime(first.year, first.month, first.day, tzinfo=UTC)
    with engine.repo.conn() as conn:
        rows = conn.execute(
            "SELECT (created_at AT TIME ZONE 'UTC')::date AS day, state, count(*)"
            " FROM executions WHERE created_at >= %s GROUP BY 1, 2",
            (since,),
        ).fetchall()
    counts: dict[date, dict[str, int]] = {}
    states: set[str] = set()
    for day, state, count in rows:
        counts.setdefault(day, {})[state] = count
        states.add(state)
    series = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        series.append({"day": day.isoformat(), "counts": counts.get(day, {})})
    return {"days": series, "states": sorted(states)}


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if hasattr(value, "to_json"):
        return _jsonable(value.to_json())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def taxi_report(
    engine: Engine, taxi: str, start: str, end: str, flow: str | None
) -> dict[str, Any]:
    """``flowhawk taxi verify`` as JSON for the data page: the report plus, per month,
    ``loaded`` (any rows) and ``status``: ok, unverified (loaded by a method that records no
    source row count) or problem."""
    from flowhawk.tasks.pgconn import connect_target
    from flowhawk.taxi.synth import month_range
    from flowhawk.taxi.verify import _target_from, verify_months

    try:
        months = month_range(start, end)
        target, _ = _target_from(engine.settings, flow)
        with connect_target(target) as conn:
            report = verify_months(conn, taxi, months)
    except (FlowhawkError, ValueError) as exc:
        raise HTTPException(422, str(exc)) from None
    data = _jsonable(report.as_dict())
    data["database"] = target.display()
    for month in data["months"]:
        month["loaded"] = month["rows"] > 0
        problems = month["problems"]
        if not problems:
            month["status"] = "ok"
        elif all("no recorded source row count" in p for p in problems):
            month["status"] = "unverified"
        else:
            month["status"] = "problem"
    data["missing"] = [m["month"] for m in data["months"] if not m["loaded"]]
    statuses = {m["status"] for m in data["months"]}
    data["verdict"] = (
        "verified"
        if data["ok"]
        else "unverified"
        if statuses <= {"ok", "unverified"} and not data["leftover_staging"]
        else "discrepancies"
    )
    return data
