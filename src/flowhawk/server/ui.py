"""Server-rendered pages. Forms post here (with the CSRF token) and redirect to the result.

Live parts of a page are re-fetched as HTML fragments (``?part=...``) by ``static/app.js``;
execution logs stream over server-sent events from the API.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from flowhawk.engine.service import Engine
from flowhawk.errors import FlowhawkError
from flowhawk.flow.model import Flow
from flowhawk.server import api, svg, views
from flowhawk.server.auth import csrf_token, set_csrf_cookie
from flowhawk.store.records import TERMINAL_STATES

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
ALL_STATES = [
    "CREATED", "QUEUED", "RUNNING", "PAUSED", "SUCCESS", "WARNING", "FAILED", "KILLING",
    "KILLED", "CANCELLED", "RETRYING", "RESTARTED",
]  # fmt: skip


def _dt(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is not None and value.utcoffset().total_seconds() == 0:
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return value.isoformat(sep=" ", timespec="seconds")


def _duration(start: Any, end: Any) -> str:
    if start is None:
        return ""
    seconds = ((end or datetime.now(UTC)) - start).total_seconds()
    return svg._duration(max(0.0, seconds))


templates.env.filters["dt"] = _dt
templates.env.globals["colour"] = svg.colour
templates.env.globals["duration"] = _duration
templates.env.globals["TERMINAL"] = TERMINAL_STATES
templates.env.policies["json.dumps_kwargs"] = {"sort_keys": False, "default": str}


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    context.setdefault("title", "flowhawk")
    context["csrf"] = csrf_token(request)
    context["auth_user"] = engine_of(request).settings.server_username
    response = templates.TemplateResponse(request, name, context, status_code=status)
    set_csrf_cookie(request, response)
    return response


def engine_of(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def error_page(request: Request, status: int, message: Any) -> HTMLResponse:
    return render(
        request, "error.html", status=status, title="Error", status_code=status, message=message
    )


def _pairs(text: str) -> dict[str, str]:
    """Labels typed as ``key:value`` / ``key=value``, one per line or comma-separated."""
    result: dict[str, str] = {}
    for chunk in text.replace(",", "\n").splitlines():
        chunk = chunk.strip()
        if not chunk:
            continue
        cut = min((i for i in (chunk.find(":"), chunk.find("=")) if i > 0), default=-1)
        if cut < 0:
            raise HTTPException(422, f"label {chunk!r} must be written key:value")
        result[chunk[:cut].strip()] = chunk[cut + 1 :].strip()
    return result


def _form_inputs(form: FormData, flow: Flow) -> dict[str, Any]:
    """Inputs from form fields ``input.<id>``; an empty field means "not given"."""
    values: dict[str, Any] = {}
    for spec in flow.inputs:
        items = [v for v in form.getlist(f"input.{spec.id}") if isinstance(v, str)]
        if not items:
            continue
        if spec.type == "MULTISELECT":
            chosen = [v for v in items if v]
            if chosen:
                values[spec.id] = chosen
            continue
        value = items[-1]
        if value == "":
            continue
        if spec.type == "DATETIME" and len(value) == 16:
            value += ":00Z"
        values[spec.id] = value
    return values


# -- dashboard --------------------------------------------------------------------------------
@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, days: int = 14) -> HTMLResponse:
    from flowhawk.server.data import executions_per_day

    engine = engine_of(request)
    days = max(1, min(days, 90))
    stats = executions_per_day(engine, days)
    totals: dict[str, int] = {}
    for day in stats["days"]:
        for state, count in day["counts"].items():
            totals[state] = totals.get(state, 0) + count
    recent = engine.repo.list_executions(limit=10)
    return render(
        request,
        "dashboard.html",
        title="Dashboard",
        nav="dashboard",
        chart=svg.stacked_days(stats["days"], stats["states"]),
        totals=totals,
        days=days,
        recent=recent,
        flows=len(engine.repo.list_flows()),
    )


# -- flows ------------------------------------------------------------------------------------
@router.get("/ui/flows", response_class=HTMLResponse)
def flows_page(request: Request) -> HTMLResponse:
    engine = engine_of(request)
    rows = [api.flow_summary(engine, r) for r in engine.repo.list_flows()]
    return render(request, "flows.html", title="Flows", nav="flows", flows=rows)


NEW_FLOW = """id: hello
namespace: company.team

inputs:
  - id: name
    type: STRING
    defaults: world

tasks:
  - id: say_hello
    type: io.kestra.plugin.core.log.Log
    message: "Hello, {{ inputs.name }}!"
"""


@router.get("/ui/flows/new", response_class=HTMLResponse)
def new_flow_page(request: Request) -> HTMLResponse:
    return render(request, "editor.html", title="New flow", nav="flows", source=NEW_FLOW, flow=None)


@router.get("/ui/flows/{namespace}/{flow_id}", response_class=HTMLResponse)
def flow_page(
    request: Request, namespace: str, flow_id: str, tab: str = "overview"
) -> HTMLResponse:
    from flowhawk.engine.scheduler import list_triggers

    engine = engine_of(request)
    record = engine.repo.get_flow(namespace, flow_id)
    if record is None:
        return error_page(request, 404, f"flow {namespace}/{flow_id} not found")
    flow: Flow | None = None
    problem = None
    try:
        flow = engine.parse(record.source, f"{namespace}/{flow_id}")
    except FlowhawkError as exc:
        problem = str(exc)
    triggers = {t.trigger_id: t for t in list_triggers(engine.repo, namespace, flow_id)}
    recent = engine.repo.list_executions(namespace=namespace, flow_id=flow_id, limit=10)
    return render(
        request,
        "flow.html",
        title=f"{namespace}/{flow_id}",
        nav="flows",
        record=record,
        flow=flow,
        problem=problem,
        source=record.source,
        inputs=views.inputs_json(flow) if flow else [],
        topology=svg.topology(flow.tasks, flow.errors, flow.finally_) if flow else "",
        triggers=triggers,
        recent=recent,
        revisions=engine.repo.flow_revisions(namespace, flow_id),
        tab=tab,
        today=datetime.now(UTC).date().isoformat(),
    )


@router.post("/ui/flows/{namespace}/{flow_id}/execute")
async def execute_form(request: Request, namespace: str, flow_id: str) -> Response:
    engine = engine_of(request)
    form = await request.form()
    try:
        flow, _ = await run_in_threadpool(api.load_flow, engine, namespace, flow_id)
        trigger_id = str(form.get("trigger") or "") or None
        date_text = str(form.get("trigger_date") or "").strip()
        trigger_date = None
        if date_text:
            trigger_date = datetime.fromisoformat(date_text.replace("Z", "+00:00"))
            if trigger_date.tzinfo is None:
                trigger_date = trigger_date.replace(tzinfo=UTC)
        elif trigger_id:
            trigger_date = datetime.now(UTC)
        body = api.ExecutionCreate(
            inputs=_form_inputs(form, flow),
            labels=_pairs(str(form.get("labels") or "")),
            triggerId=trigger_id,
            triggerDate=trigger_date,
        )
        created = await run_in_threadpool(api.start_execution, engine, namespace, flow_id, body)
    except HTTPException as exc:
        return error_page(request, exc.status_code, exc.detail)
    except (FlowhawkError, ValueError) as exc:
        return error_page(request, 422, str(exc))
    return _see_other(f"/ui/executions/{created['id']}")


@router.post("/ui/flows/{namespace}/{flow_id}/backfill")
async def backfill_form(request: Request, namespace: str, flow_id: str) -> Response:
    engine = engine_of(request)
    form = await request.form()
    try:
        flow, _ = await run_in_threadpool(api.load_flow, engine, namespace, flow_id)
        body = api.BackfillBody(
            namespace=namespace,
            flowId=flow_id,
            triggerId=str(form.get("trigger") or "") or None,
            start=str(form.get("start") or ""),
            end=str(form.get("end") or ""),
            labels=_pairs(str(form.get("labels") or "")),
            inputs=_form_inputs(form, flow),
            parallelism=int(str(form.get("parallelism") or "1")),
            onlyMissing=form.get("only_missing") in ("on", "true", "1"),
        )
        created = await run_in_threadpool(api.create_backfill, engine, body)
    except HTTPException as exc:
        return error_page(request, exc.status_code, exc.detail)
    except (FlowhawkError, ValueError) as exc:
        return error_page(request, 422, str(exc))
    return _see_other(f"/ui/backfills/{created['id']}")


@router.post("/ui/triggers/{namespace}/{flow_id}/{trigger_id}/{action}")
def trigger_form(
    request: Request, namespace: str, flow_id: str, trigger_id: str, action: str
) -> Response:
    if action not in ("enable", "disable"):
        return error_page(request, 404, f"no action {action!r}")
    try:
        api.switch_trigger(engine_of(request), namespace, flow_id, trigger_id, action == "enable")
    except HTTPException as exc:
        return error_page(request, exc.status_code, exc.detail)
    back = request.headers.get("referer") or f"/ui/flows/{namespace}/{flow_id}"
    return _see_other(back)


@router.get("/ui/triggers", response_class=HTMLResponse)
def triggers_page(request: Request) -> HTMLResponse:
    from flowhawk.engine.scheduler import list_triggers

    rows = list_triggers(engine_of(request).repo)
    return render(request, "triggers.html", title="Triggers", nav="triggers", triggers=rows)


# -- executions -------------------------------------------------------------------------------
@router.get("/ui/executions", response_class=HTMLResponse)
def executions_page(
    request: Request,
    state: str = "",
    flow: str = "",
    label: str = "",
    start: str = "",
    end: str = "",
    cursor: str = "",
    part: str = "",
) -> HTMLResponse:
    engine = engine_of(request)
    namespace = flow_id = None
    if flow:
        namespace, _, flow_id = flow.rpartition("/")
        namespace = namespace or None
    try:
        labels = _pairs(label) if label else {}
        rows, next_cursor = api.list_page(
            engine,
            namespace=namespace,
            flow_id=flow_id,
            states=[state] if state else None,
            labels=labels,
            start=_day(start, False),
            end=_day(end, True),
            limit=50,
            cursor=cursor or None,
        )
    except HTTPException as exc:
        return error_page(request, exc.status_code, exc.detail)
    filters = {"state": state, "flow": flow, "label": label, "start": start, "end": end}
    query = {k: v for k, v in filters.items() if v}
    context: dict[str, Any] = {
        "rows": rows,
        "next_url": f"/ui/executions?{urlencode({**query, 'cursor': next_cursor})}"
        if next_cursor
        else None,
        "paged": bool(cursor),
    }
    if part == "rows":
        return render(request, "_execution_rows.html", **context)
    return render(
        request,
        "executions.html",
        title="Executions",
        nav="executions",
        filters=filters,
        states=ALL_STATES,
        flows=[f"{r.namespace}/{r.id}" for r in engine.repo.list_flows()],
        live_url=f"/ui/executions?{urlencode({**query, 'part': 'rows'})}",
        **context,
    )


def _day(text: str, end: bool) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(422, f"not a date: {text!r}") from None
    if len(text) == 10 and end:
        value = value.replace(hour=23, minute=59, second=59, microsecond=999999)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@router.get("/ui/executions/{execution_id}", response_class=HTMLResponse)
def execution_page(request: Request, execution_id: str, part: str = "") -> HTMLResponse:
    engine = engine_of(request)
    execution = engine.repo.get_execution(execution_id)
    if execution is None:
        return error_page(request, 404, f"execution {execution_id} not found")
    runs = engine.repo.task_runs(execution_id)
    context: dict[str, Any] = {
        "e": execution,
        "runs": runs,
        "gantt": svg.gantt(runs, datetime.now(UTC)),
        "files": views.files_json(engine, execution_id),
        "outputs_json": json.dumps(execution.outputs or {}, indent=2, default=str),
        "live": execution.state not in TERMINAL_STATES,
    }
    if part == "live":
        return render(request, "_execution_live.html", **context)
    return render(
        request,
        "execution.html",
        title=f"Execution {execution_id}",
        nav="executions",
        **context,
    )


@router.post("/ui/executions/{execution_id}/{action}")
def execution_action(request: Request, execution_id: str, action: str) -> Response:
    engine = engine_of(request)
    try:
        if action == "kill":
            api.kill(engine, execution_id)
        elif action == "restart":
            api.restart(engine, execution_id)
        else:
            return error_page(request, 404, f"no action {action!r}")
    except HTTPException as exc:
        return error_page(request, exc.status_code, exc.detail)
    except FlowhawkError as exc:
        return error_page(request, 409, str(exc))
    return _see_other(f"/ui/executions/{execution_id}")


# -- backfills --------------------------------------------------------------------------------
@router.get("/ui/backfills", response_class=HTMLResponse)
def backfills_page(request: Request) -> HTMLResponse:
    from flowhawk.engine import backfill

    rows = backfill.list_with_progress(engine_of(request).repo, limit=100)
    items = [backfill.describe(record, progress) for record, progress in rows]
    return render(request, "backfills.html", title="Backfills", nav="backfills", backfills=items)


def calendar(executions: list[dict[str, Any]]) -> dict[str, Any]:
    """Ticks as a grid: years × months for monthly ticks, months × days for daily, else days × hours."""
    ticks = [(datetime.fromisoformat(e["tick"]), e) for e in executions if e.get("tick")]
    if not ticks:
        return {"columns": [], "rows": []}
    spacing = min(
        ((b[0] - a[0]).total_seconds() for a, b in zip(ticks, ticks[1:], strict=False)),
        default=31 * 86400,
    )
    if spacing >= 27 * 86400:
        columns = [datetime(2000, m, 1).strftime("%b") for m in range(1, 13)]

        def key(t: datetime) -> tuple[str, int]:
            return str(t.year), t.month - 1
    elif spacing >= 86400 - 3600:
        columns = [str(d) for d in range(1, 32)]

        def key(t: datetime) -> tuple[str, int]:
            return t.strftime("%Y-%m"), t.day - 1
    else:
        columns = [f"{h:02d}" for h in range(24)]

        def key(t: datetime) -> tuple[str, int]:
            return t.strftime("%Y-%m-%d"), t.hour

    grid: dict[str, list[list[dict[str, Any]]]] = {}
    for tick, execution in ticks:
        row, col = key(tick)
        cells = grid.setdefault(row, [[] for _ in columns])
        cells[col].append({**execution, "tick": tick.isoformat()})
    return {"columns": columns, "rows": sorted(grid.items())}


@router.get("/ui/backfills/{backfill_id}", response_class=HTMLResponse)
def backfill_page(request: Request, backfill_id: str, part: str = "") -> HTMLResponse:
    try:
        data = views.backfill_json(engine_of(request), backfill_id, ticks=True)
    except HTTPException as exc:
        return error_page(request, exc.status_code, exc.detail)
    progress = data["progress"]
    total = progress["total"] or 1
    context: dict[str, Any] = {
        "b": data,
        "p": progress,
        "pct": {
            k: 100 * progress[k] / total
            for k in ("done", "failed", "cancelled", "running", "queued", "pending")
        },
        "grid": calendar(data["executions"]),
        "live": data["state"] in ("RUNNING", "PAUSED")
        and not (progress["running"] + progress["queued"] + progress["pending"] == 0),
    }
    if part == "live":
        return render(request, "_backfill_live.html", **context)
    return render(
        request, "backfill.html", title=f"Backfill {backfill_id}", nav="backfills", **context
    )


@router.post("/ui/backfills/{backfill_id}/{action}")
def backfill_action(request: Request, backfill_id: str, action: str) -> Response:
    if action not in ("pause", "resume", "cancel"):
        return error_page(request, 404, f"no action {action!r}")
    try:
        api.move_backfill(engine_of(request), backfill_id, action)
    except HTTPException as exc:
        return error_page(request, exc.status_code, exc.detail)
    return _see_other(f"/ui/backfills/{backfill_id}")


# -- data -------------------------------------------------------------------------------------
@router.get("/ui/data", response_class=HTMLResponse)
def data_page(
    request: Request, taxi: str = "green", start: str = "", end: str = "", flow: str = ""
) -> HTMLResponse:
    from flowhawk.server.data import taxi_report

    start = start or "2019-01"
    end = end or "2019-12"
    report = None
    problem = None
    if taxi not in ("green", "yellow") or not (_month(start) and _month(end)) or start > end:
        problem = "choose green or yellow and a range of months written YYYY-MM (start ≤ end)"
    else:
        try:
            report = taxi_report(engine_of(request), taxi, start, end, flow or None)
        except HTTPException as exc:
            problem = str(exc.detail)
        except FlowhawkError as exc:
            problem = str(exc)
    months = (report or {}).get("months") or []
    return render(
        request,
        "data.html",
        title="Data",
        nav="data",
        taxi=taxi,
        start=start,
        end=end,
        flow=flow,
        report=report,
        months=months,
        loaded=sum(1 for m in months if m.get("loaded")),
        chart=svg.month_bars(months) if months else "",
        problem=problem,
    )


def _month(text: str) -> bool:
    return (
        len(text) == 7
        and text[4] == "-"
        and text[:4].isdigit()
        and text[5:].isdigit()
        and 1 <= int(text[5:]) <= 12
    )
