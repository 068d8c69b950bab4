"""The REST API under ``/api/v1``: flows, executions, logs, files, triggers, backfills, taxi.

Handlers are thin: the engine, the repository and the scheduling modules do the work. Bad
input answers 404/409/422 with a JSON ``detail``; FlowhawkError subclasses are mapped in
``app.py``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from flowhawk.engine.service import Engine, NotFound
from flowhawk.errors import FlowhawkError
from flowhawk.flow.loader import FlowValidationError, validate_source
from flowhawk.flow.model import Flow
from flowhawk.server import views
from flowhawk.server.live import LiveHub
from flowhawk.store.files import FileStorage, StorageError
from flowhawk.store.records import TERMINAL_STATES

router = APIRouter(prefix="/api/v1")

YAML_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/x-yaml": {"schema": {"type": "string"}}},
    }
}
NAME = r"^[^/\x00]{1,200}$"

Namespace = Annotated[str, Query(pattern=NAME)]


def engine_of(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def hub_of(request: Request) -> LiveHub:
    return request.app.state.hub  # type: ignore[no-any-return]


class Problem(BaseModel):
    line: int
    column: int | None = None
    path: str
    message: str


class ValidationReport(BaseModel):
    valid: bool
    namespace: str | None = None
    id: str | None = None
    problems: list[Problem]


class FlowSummary(BaseModel):
    namespace: str
    id: str
    revision: int
    updated: str | None = None
    description: str | None = None
    inputs: list[dict[str, Any]] = Field(default_factory=list)
    triggers: list[dict[str, Any]] = Field(default_factory=list)
    tasks: int = 0
    error: str | None = None


class FlowDetail(FlowSummary):
    source: str


class DeployResult(BaseModel):
    namespace: str
    id: str
    revision: int
    changed: bool


class Revision(BaseModel):
    revision: int
    deleted: bool
    created: str | None = None
    source: str


class ExecutionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    triggerId: str | None = Field(None, description="Apply this trigger's inputs and labels.")
    triggerDate: datetime | None = Field(None, description="Run as this tick (trigger.date).")


class ExecutionPage(BaseModel):
    results: list[dict[str, Any]]
    nextCursor: str | None = None


class BackfillBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    namespace: str = Field(pattern=NAME)
    flowId: str = Field(pattern=NAME)
    triggerId: str | None = None
    start: str = Field(description="ISO date or date-time (in the trigger's zone when naive)")
    end: str = Field(description="ISO date (the whole day) or date-time")
    labels: dict[str, str] = Field(default_factory=dict)
    inputs: dict[str, Any] = Field(default_factory=dict)
    parallelism: int = Field(1, ge=1, le=1000)
    onlyMissing: bool = False


class BackfillPlanOut(BaseModel):
    namespace: str
    flowId: str
    triggerId: str
    timezone: str
    start: str
    end: str
    ticks: list[str]
    skipped: list[dict[str, str]]
    summary: str
    notes: list[str]
    labels: dict[str, str]
    inputs: dict[str, Any]


def problems_json(problems: list[Any]) -> list[dict[str, Any]]:
    return [
        {"line": p.line, "column": p.column, "path": p.path, "message": p.message} for p in problems
    ]


def _check_name(value: str, what: str) -> None:
    if not value or "\x00" in value or len(value) > 200:
        raise HTTPException(404, f"{what} not found")


def flow_summary(engine: Engine, record: Any, *, with_source: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "namespace": record.namespace,
        "id": record.id,
        "revision": record.revision,
        "updated": record.created_at.isoformat() if record.created_at else None,
    }
    try:
        flow = engine.parse(record.source, f"{record.namespace}/{record.id}")
    except FlowhawkError as exc:
        data.update(error=str(exc))
    else:
        data.update(
            description=flow.description,
            inputs=views.inputs_json(flow),
            triggers=[views.trigger_spec(t) for t in flow.triggers],
            tasks=len(flow.all_tasks()),
        )
    if with_source:
        data["source"] = record.source
    return data


async def _yaml_text(request: Request) -> str:
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPException(422, f"the flow must be UTF-8 text: {exc.reason}") from None
    if "\x00" in text:
        raise HTTPException(422, "the flow contains a NUL character")
    return text


# -- flows ------------------------------------------------------------------------------------
@router.get("/flows", response_model=list[FlowSummary], tags=["flows"])
def list_flows(
    request: Request, namespace: Annotated[str | None, Query(pattern=NAME)] = None
) -> Any:
    engine = engine_of(request)
    return [flow_summary(engine, r) for r in engine.repo.list_flows(namespace)]


@router.get("/flows/schema", tags=["flows"])
def flow_schema() -> dict[str, Any]:
    """The JSON Schema of the flow dialect (for editors)."""
    from flowhawk.flow.schema import flow_json_schema

    return flow_json_schema()


@router.post(
    "/flows/validate", response_model=ValidationReport, tags=["flows"], openapi_extra=YAML_BODY
)
async def validate_flow(request: Request) -> Any:
    """Every problem of a flow's YAML, with its line; nothing is stored."""
    text = await _yaml_text(request)
    engine = engine_of(request)
    problems = await run_in_threadpool(
        validate_source, text, "<editor>", engine.settings.plugin_defaults
    )
    namespace = flow_id = None
    if not problems:
        flow = await run_in_threadpool(engine.parse, text, "<editor>")
        namespace, flow_id = flow.namespace, flow.id
    return {
        "valid": not problems,
        "namespace": namespace,
        "id": flow_id,
        "problems": problems_json(problems),
    }


def _deploy(
    engine: Engine, text: str, expect: tuple[str, str] | None
) -> tuple[dict[str, Any], bool]:
    try:
        flow = engine.parse(text, "<request>")
    except FlowValidationError as exc:
        raise HTTPException(422, problems_json(exc.problems)) from None
    if expect is not None and (flow.namespace, flow.id) != expect:
        raise HTTPException(
            422,
            f"the YAML defines {flow.namespace}/{flow.id}, but the URL names"
            f" {expect[0]}/{expect[1]}",
        )
    existed = engine.repo.get_flow(flow.namespace, flow.id) is not None
    _, revision, changed = engine.deploy_source(text, f"{flow.namespace}/{flow.id}")
    result = {"namespace": flow.namespace, "id": flow.id, "revision": revision, "changed": changed}
    return result, not existed


@router.post(
    "/flows",
    response_model=DeployResult,
    status_code=201,
    tags=["flows"],
    openapi_extra=YAML_BODY,
    responses={200: {"description": "an existing flow was updated (or unchanged)"}},
)
async def create_flow(request: Request) -> Any:
    """Deploy a flow from YAML: 201 when it is new, 200 when an existing flow was updated."""
    text = await _yaml_text(request)
    result, created = await run_in_threadpool(_deploy, engine_of(request), text, None)
    return JSONResponse(result, status_code=201 if created else 200)


@router.put(
    "/flows/{namespace}/{flow_id}",
    response_model=DeployResult,
    tags=["flows"],
    openapi_extra=YAML_BODY,
)
async def update_flow(namespace: str, flow_id: str, request: Request) -> Any:
    """Deploy a new revision (only when the source changed)."""
    text = await _yaml_text(request)
    result, _ = await run_in_threadpool(_deploy, engine_of(request), text, (namespace, flow_id))
    return result


@router.get("/flows/{namespace}/{flow_id}", response_model=FlowDetail, tags=["flows"])
def get_flow(namespace: str, flow_id: str, request: Request) -> Any:
    _check_name(namespace, "flow")
    engine = engine_of(request)
    record = engine.repo.get_flow(namespace, flow_id)
    if record is None:
        raise HTTPException(404, f"flow {namespace}/{flow_id} not found")
    return flow_summary(engine, record, with_source=True)


@router.delete("/flows/{namespace}/{flow_id}", status_code=204, tags=["flows"])
def delete_flow(namespace: str, flow_id: str, request: Request) -> Response:
    """Delete a flow (its revisions and executions are kept)."""
    _check_name(namespace, "flow")
    if not engine_of(request).repo.delete_flow(namespace, flow_id):
        raise HTTPException(404, f"flow {namespace}/{flow_id} not found")
    return Response(status_code=204)


@router.get("/flows/{namespace}/{flow_id}/revisions", response_model=list[Revision], tags=["flows"])
def flow_revisions(namespace: str, flow_id: str, request: Request) -> Any:
    _check_name(namespace, "flow")
    rows = engine_of(request).repo.flow_revisions(namespace, flow_id)
    if not rows:
        raise HTTPException(404, f"flow {namespace}/{flow_id} not found")
    return [
        {
            "revision": r.revision,
            "deleted": r.deleted,
            "created": r.created_at.isoformat() if r.created_at else None,
            "source": r.source,
        }
        for r in rows
    ]


# -- executions -------------------------------------------------------------------------------
def load_flow(engine: Engine, namespace: str, flow_id: str) -> tuple[Flow, int]:
    _check_name(namespace, "flow")
    try:
        return engine.flow(namespace, flow_id)
    except NotFound as exc:
        raise HTTPException(404, str(exc)) from None


def start_execution(
    engine: Engine, namespace: str, flow_id: str, body: ExecutionCreate
) -> dict[str, Any]:
    flow, revision = load_flow(engine, namespace, flow_id)
    date = body.triggerDate
    if date is not None and date.tzinfo is None:
        raise HTTPException(422, "triggerDate needs a time zone offset (e.g. 2019-01-01T00:00Z)")
    started = engine.create_execution(
        flow,
        revision,
        inputs=body.inputs,
        labels=body.labels,
        trigger_id=body.triggerId,
        trigger_date=date,
    )
    return started.execution.to_json()


class ExecutionStart(ExecutionCreate):
    namespace: str = Field(pattern=NAME)
    flowId: str = Field(pattern=NAME)


@router.post("/executions", status_code=201, tags=["executions"])
def create_execution(body: ExecutionStart, request: Request) -> dict[str, Any]:
    """Start an execution of a deployed flow with inputs and labels; the workers run it."""
    return start_execution(engine_of(request), body.namespace, body.flowId, body)


def encode_cursor(created: datetime, execution_id: str) -> str:
    raw = json.dumps([created.isoformat(), execution_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, execution_id = json.loads(raw)
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None or not isinstance(execution_id, str):
            raise ValueError("bad cursor")
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise HTTPException(422, "invalid cursor: pass back nextCursor as it was given") from None
    return moment, execution_id


def parse_labels(pairs: list[str] | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition(":")
        if not sep or not key:
            raise HTTPException(422, f"label filter must be key:value, got {pair!r}")
        labels[key] = value
    return labels


def list_page(
    engine: Engine,
    *,
    namespace: str | None = None,
    flow_id: str | None = None,
    states: list[str] | None = None,
    labels: dict[str, str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Any], str | None]:
    """One page of executions (newest first) and the cursor of the next one."""
    for moment, what in ((start, "startDate"), (end, "endDate")):
        if moment is not None and moment.tzinfo is None:
            raise HTTPException(422, f"{what} needs a time zone offset (e.g. 2019-01-01T00:00Z)")
    for text in [
        namespace,
        flow_id,
        *(states or []),
        *(labels or {}).keys(),
        *(labels or {}).values(),
    ]:
        if text and "\x00" in text:
            raise HTTPException(422, "filters cannot contain NUL characters")
    rows = engine.repo.list_executions(
        namespace=namespace or None,
        flow_id=flow_id or None,
        states=[s.upper() for s in states or []],
        labels=labels or None,
        start_after=start,
        start_before=end,
        limit=limit + 1,
        before=decode_cursor(cursor) if cursor else None,
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        assert last.created_at is not None
        next_cursor = encode_cursor(last.created_at, last.id)
    return rows, next_cursor


@router.get("/executions", response_model=ExecutionPage, tags=["executions"])
def list_executions(
    request: Request,
    namespace: Annotated[str | None, Query(pattern=NAME)] = None,
    flowId: Annotated[str | None, Query(pattern=NAME)] = None,
    state: Annotated[list[str] | None, Query(description="repeatable")] = None,
    label: Annotated[list[str] | None, Query(description="key:value, repeatable")] = None,
    startDate: Annotated[datetime | None, Query(description="created at or after")] = None,
    endDate: Annotated[datetime | None, Query(description="created at or before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Any:
    """Newest first, keyset-paged: pass ``nextCursor`` back as ``cursor``."""
    rows, next_cursor = list_page(
        engine_of(request),
        namespace=namespace,
        flow_id=flowId,
        states=state,
        labels=parse_labels(label),
        start=startDate,
        end=endDate,
        limit=limit,
        cursor=cursor,
    )
    return {"results": [r.to_json() for r in rows], "nextCursor": next_cursor}


def get_execution_or_404(engine: Engine, execution_id: str) -> Any:
    _check_name(execution_id, "execution")
    found = engine.repo.get_execution(execution_id)
    if found is None:
        raise HTTPException(404, f"execution {execution_id} not found")
    return found


@router.get("/executions/{execution_id}", tags=["executions"])
def get_execution(execution_id: str, request: Request) -> dict[str, Any]:
    """An execution with its task runs."""
    engine = engine_of(request)
    execution = get_execution_or_404(engine, execution_id)
    data = execution.to_json()
    data["taskRuns"] = [r.to_json() for r in engine.repo.task_runs(execution_id)]
    return data


def kill(engine: Engine, execution_id: str) -> dict[str, Any]:
    execution = get_execution_or_404(engine, execution_id)
    if execution.state in TERMINAL_STATES:
        raise HTTPException(409, f"execution {execution_id} already ended {execution.state}")
    engine.repo.request_kill(execution_id)
    return get_execution_or_404(engine, execution_id).to_json()  # type: ignore[no-any-return]


@router.post("/executions/{execution_id}/kill", status_code=202, tags=["executions"])
def kill_execution(execution_id: str, request: Request) -> dict[str, Any]:
    """Stop an execution: a waiting one ends KILLED at once, a running one soon after."""
    return kill(engine_of(request), execution_id)


def restart(engine: Engine, execution_id: str) -> dict[str, Any]:
    execution = get_execution_or_404(engine, execution_id)
    if execution.state not in ("FAILED", "KILLED", "WARNING", "CANCELLED"):
        raise HTTPException(
            409,
            f"execution {execution_id} is {execution.state}; only FAILED, KILLED, WARNING or"
            " CANCELLED executions can be restarted",
        )
    return engine.prepare_restart(execution_id).to_json()


@router.post("/executions/{execution_id}/restart", tags=["executions"])
def restart_execution(execution_id: str, request: Request) -> dict[str, Any]:
    """Re-run from the failed task with the same inputs and trigger date."""
    return restart(engine_of(request), execution_id)


#: query parameters shared by the log endpoints
MinLevelQuery = Annotated[str | None, Query(pattern="^(?i:TRACE|DEBUG|INFO|WARN|WARNING|ERROR)$")]
TaskIdQuery = Annotated[str | None, Query(pattern=NAME)]
AfterIdQuery = Annotated[int, Query(ge=0, le=2**62)]


@router.get(
    "/executions/{execution_id}/logs",
    tags=["executions"],
    responses={200: {"content": {"text/event-stream": {}}}},
)
def execution_logs(
    execution_id: str,
    request: Request,
    minLevel: MinLevelQuery = None,
    taskId: TaskIdQuery = None,
    afterId: AfterIdQuery = 0,
    limit: Annotated[int, Query(ge=1, le=10000)] = 5000,
) -> Any:
    """Log lines as JSON; ask for ``text/event-stream`` to follow new lines as they come."""
    engine = engine_of(request)
    get_execution_or_404(engine, execution_id)
    if "text/event-stream" in request.headers.get("accept", ""):
        return _sse(request, execution_id, minLevel, taskId, afterId)
    rows = engine.repo.logs(
        execution_id, after_id=afterId, min_level=minLevel, task_id=taskId, limit=limit
    )
    return [r.to_json() for r in rows]


@router.get(
    "/executions/{execution_id}/logs/follow",
    tags=["executions"],
    responses={200: {"content": {"text/event-stream": {}}}},
)
def follow_logs(
    execution_id: str,
    request: Request,
    minLevel: MinLevelQuery = None,
    taskId: TaskIdQuery = None,
    afterId: AfterIdQuery = 0,
) -> StreamingResponse:
    """Server-sent events: ``log`` events (id = log id), then ``end`` with the final state."""
    get_execution_or_404(engine_of(request), execution_id)
    return _sse(request, execution_id, minLevel, taskId, afterId)


def _sse(
    request: Request, execution_id: str, level: str | None, task: str | None, after: int
) -> StreamingResponse:
    last = request.headers.get("last-event-id", "")
    if last.isdigit():
        after = max(after, int(last))
    return StreamingResponse(
        _log_events(request, execution_id, level, task, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _log_events(
    request: Request, execution_id: str, level: str | None, task: str | None, after: int
) -> AsyncIterator[str]:
    """New lines as they are written; ``end`` once the execution ended and its lines are out.

    A notification wakes the stream at once; without one it polls (see ``LiveHub``). Lines
    may land shortly after the final state, so the stream waits for a quiet second first.
    """
    engine = engine_of(request)
    hub = hub_of(request)
    event = hub.subscribe(execution_id)
    quiet_since: float | None = None
    idle = 0.0
    try:
        yield "retry: 1000\n\n"
        while not hub.stopping.is_set():
            rows = await run_in_threadpool(
                engine.repo.logs,
                execution_id,
                after_id=after,
                min_level=level,
                task_id=task,
                limit=1000,
            )
            if rows:
                quiet_since = None
                idle = 0.0
                chunk = []
                for row in rows:
                    after = row.id
                    chunk.append(f"id: {row.id}\nevent: log\ndata: {json.dumps(row.to_json())}\n\n")
                yield "".join(chunk)
                if len(rows) == 1000:
                    continue
            execution = await run_in_threadpool(engine.repo.get_execution, execution_id)
            state = execution.state if execution else "DELETED"
            if state in TERMINAL_STATES or execution is None:
                loop_time = _now()
                if quiet_since is None:
                    quiet_since = loop_time
                elif loop_time - quiet_since >= 1.0:
                    yield f"event: end\ndata: {json.dumps({'state': state})}\n\n"
                    return
                await hub.wait(event, 0.25)
                continue
            if await request.is_disconnected():
                return
            await hub.wait(event)
            idle += hub.poll_interval
            if idle >= 15:
                idle = 0.0
                yield ": keep-alive\n\n"
    finally:
        hub.unsubscribe(execution_id, event)


def _now() -> float:
    import time

    return time.monotonic()


@router.get("/executions/{execution_id}/files", tags=["executions"])
def execution_files(execution_id: str, request: Request) -> list[dict[str, Any]]:
    """Files the execution's tasks stored (download them with ``/file?uri=``)."""
    engine = engine_of(request)
    get_execution_or_404(engine, execution_id)
    return views.files_json(engine, execution_id)


@router.get("/executions/{execution_id}/file", tags=["executions"])
def download_file(
    execution_id: str,
    request: Request,
    uri: Annotated[str, Query(max_length=2000)],
) -> FileResponse:
    """One stored file of this execution; any other URI is not found."""
    engine = engine_of(request)
    execution = get_execution_or_404(engine, execution_id)
    storage = FileStorage(engine.settings.storage_path)
    prefix = storage.execution_prefix(execution.namespace, execution.flow_id, execution.id)
    known = {f["uri"] for f in engine.repo.files(execution_id)}
    own = uri.startswith(f"kestra:///{prefix}/")
    if uri not in known and not own:
        raise HTTPException(404, f"execution {execution_id} has no file {uri!r}")
    try:
        path = storage.path_for(uri)
    except StorageError:
        raise HTTPException(404, f"execution {execution_id} has no file {uri!r}") from None
    root = storage.root / prefix
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        raise HTTPException(404, f"file {uri!r} is no longer in storage (purged?)")
    return FileResponse(path, filename=path.name)


# -- triggers ---------------------------------------------------------------------------------
@router.get("/triggers", tags=["triggers"])
def list_triggers(
    request: Request,
    namespace: Annotated[str | None, Query(pattern=NAME)] = None,
    flowId: Annotated[str | None, Query(pattern=NAME)] = None,
) -> list[dict[str, Any]]:
    """Schedule triggers with their last and next tick."""
    from flowhawk.engine.scheduler import list_triggers as triggers

    return [t.to_json() for t in triggers(engine_of(request).repo, namespace, flowId)]


def switch_trigger(
    engine: Engine, namespace: str, flow_id: str, trigger_id: str, enabled: bool
) -> dict[str, Any]:
    from flowhawk.engine.scheduler import set_trigger_enabled
    from flowhawk.store.scheduling import SchedulingStore

    _check_name(namespace, "trigger")
    if SchedulingStore(engine.repo).get_trigger(namespace, flow_id, trigger_id) is None:
        raise HTTPException(404, f"flow {namespace}/{flow_id} has no trigger `{trigger_id}`")
    return set_trigger_enabled(engine.repo, namespace, flow_id, trigger_id, enabled).to_json()


@router.post("/triggers/{namespace}/{flow_id}/{trigger_id}/enable", tags=["triggers"])
def enable_trigger(
    namespace: str, flow_id: str, trigger_id: str, request: Request
) -> dict[str, Any]:
    """Switch a trigger on: it restarts from now (no catch-up)."""
    return switch_trigger(engine_of(request), namespace, flow_id, trigger_id, True)


@router.post("/triggers/{namespace}/{flow_id}/{trigger_id}/disable", tags=["triggers"])
def disable_trigger(
    namespace: str, flow_id: str, trigger_id: str, request: Request
) -> dict[str, Any]:
    return switch_trigger(engine_of(request), namespace, flow_id, trigger_id, False)


# -- backfills --------------------------------------------------------------------------------
def backfill_plan(engine: Engine, body: BackfillBody) -> Any:
    from flowhawk.engine import backfill

    load_flow(engine, body.namespace, body.flowId)
    request = backfill.BackfillRequest(
        namespace=body.namespace,
        flow_id=body.flowId,
        start=body.start,
        end=body.end,
        trigger_id=body.triggerId or None,
        labels=body.labels,
        inputs=body.inputs,
        parallelism=body.parallelism,
        only_missing=body.onlyMissing,
    )
    return backfill.plan(engine, request)


def plan_json(planned: Any) -> dict[str, Any]:
    return {
        "namespace": planned.flow.namespace,
        "flowId": planned.flow.id,
        "triggerId": planned.trigger.id,
        "timezone": planned.schedule.timezone,
        "start": planned.start.isoformat(),
        "end": planned.end.isoformat(),
        "ticks": [t.isoformat() for t in planned.ticks],
        "skipped": [{"tick": t.isoformat(), "state": s} for t, s in planned.skipped],
        "summary": planned.summary(),
        "notes": list(planned.notes),
        "labels": planned.labels,
        "inputs": planned.inputs,
    }


def create_backfill(engine: Engine, body: BackfillBody) -> dict[str, Any]:
    from flowhawk.engine import backfill

    planned = backfill_plan(engine, body)
    record = backfill.create(engine.repo, planned)
    if record is None:
        raise HTTPException(422, f"nothing to backfill: {planned.summary()}")
    return views.backfill_json(engine, record.id)


@router.post("/backfills/plan", response_model=BackfillPlanOut, tags=["backfills"])
def plan_backfill(body: BackfillBody, request: Request) -> Any:
    """Dry run: the ticks a backfill would run (and those only-missing skips); creates nothing."""
    return plan_json(backfill_plan(engine_of(request), body))


@router.post("/backfills", status_code=201, tags=["backfills"])
def start_backfill(body: BackfillBody, request: Request) -> dict[str, Any]:
    """Create one execution per tick (label ``backfill: true``); workers run them."""
    return create_backfill(engine_of(request), body)


@router.get("/backfills", tags=["backfills"])
def list_backfills(
    request: Request,
    namespace: Annotated[str | None, Query(pattern=NAME)] = None,
    flowId: Annotated[str | None, Query(pattern=NAME)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    from flowhawk.engine import backfill

    rows = backfill.list_with_progress(engine_of(request).repo, namespace, flowId, limit)
    return [backfill.describe(record, progress) for record, progress in rows]


@router.get("/backfills/{backfill_id}", tags=["backfills"])
def get_backfill(backfill_id: str, request: Request) -> dict[str, Any]:
    """A backfill, its progress and each tick's execution."""
    return views.backfill_json(engine_of(request), backfill_id, ticks=True)


def move_backfill(engine: Engine, backfill_id: str, action: str) -> dict[str, Any]:
    from flowhawk.engine import backfill

    views.backfill_record(engine, backfill_id)
    operation = {"pause": backfill.pause, "resume": backfill.resume, "cancel": backfill.cancel}
    try:
        operation[action](engine.repo, backfill_id)
    except backfill.BackfillError as exc:
        raise HTTPException(409, str(exc)) from None
    return views.backfill_json(engine, backfill_id)


@router.post("/backfills/{backfill_id}/pause", tags=["backfills"])
def pause_backfill(backfill_id: str, request: Request) -> dict[str, Any]:
    """Start no more of its executions; running ones finish."""
    return move_backfill(engine_of(request), backfill_id, "pause")


@router.post("/backfills/{backfill_id}/resume", tags=["backfills"])
def resume_backfill(backfill_id: str, request: Request) -> dict[str, Any]:
    return move_backfill(engine_of(request), backfill_id, "resume")


@router.post("/backfills/{backfill_id}/cancel", tags=["backfills"])
def cancel_backfill(backfill_id: str, request: Request) -> dict[str, Any]:
    """Cancel the executions that have not started; running ones finish."""
    return move_backfill(engine_of(request), backfill_id, "cancel")


# -- data and statistics ----------------------------------------------------------------------
MONTH = r"^\d{4}-(0[1-9]|1[0-2])$"


@router.get("/taxi/verify", tags=["data"])
def taxi_verify(
    request: Request,
    taxi: Annotated[str, Query(pattern="^(green|yellow)$")],
    start: Annotated[str, Query(pattern=MONTH)],
    end: Annotated[str, Query(pattern=MONTH)],
    flow: Annotated[str | None, Query(pattern=r"^[^/\x00]+/[^/\x00]+$")] = None,
) -> dict[str, Any]:
    """Per month of the range: rows loaded against the source's count, distinct ids, gaps."""
    from flowhawk.server.data import taxi_report

    if start > end:
        raise HTTPException(422, f"start {start} is after end {end}")
    return taxi_report(engine_of(request), taxi, start, end, flow)


@router.get("/stats/executions", tags=["data"])
def execution_stats(
    request: Request, days: Annotated[int, Query(ge=1, le=366)] = 14
) -> dict[str, Any]:
    """Executions created per day and state, for the last ``days`` days."""
    from flowhawk.server.data import executions_per_day

    return executions_per_day(engine_of(request), days)
