"""Pictures drawn on the server as SVG: task topology, Gantt, bar charts.

Every function returns markup (``markupsafe.Markup``) with all text escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from typing import Any

from markupsafe import Markup

from flowhawk.tasks.base import Task

STATE_COLOURS = {
    "SUCCESS": "#2f9e63",
    "WARNING": "#d9961a",
    "FAILED": "#d2453f",
    "KILLED": "#8e44ad",
    "KILLING": "#b36bd1",
    "CANCELLED": "#7c8793",
    "RUNNING": "#2f7fd8",
    "RETRYING": "#ee8a2c",
    "CREATED": "#a9b4c2",
    "QUEUED": "#8d9cf0",
    "PAUSED": "#e0b84f",
    "RESTARTED": "#5bb6c9",
    "SKIPPED": "#c9ced6",
}
NEUTRAL = "#e4e8ee"


def colour(state: str | None) -> str:
    return STATE_COLOURS.get(state or "", NEUTRAL)


def _t(text: Any) -> str:
    return escape(str(text), quote=True)


def _short(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"


# -- topology -------------------------------------------------------------------------------------
BOX_W, BOX_H, GAP, PAD = 210, 42, 22, 14


@dataclass
class Block:
    """A laid-out piece of the picture: its size and how to draw it at (x, y)."""

    width: float
    height: float
    parts: list[tuple[float, float, Any]] = field(default_factory=list)
    kind: str = "seq"
    task: Task | None = None
    label: str = ""


def _task_box(task: Task, note: str = "") -> Block:
    return Block(BOX_W, BOX_H, kind="task", task=task, label=note)


def _sequence(tasks: Sequence[Task]) -> Block:
    blocks = [_layout(t) for t in tasks]
    if not blocks:
        return Block(BOX_W, 0)
    width = max(b.width for b in blocks)
    y = 0.0
    parts = []
    for block in blocks:
        parts.append(((width - block.width) / 2, y, block))
        y += block.height + GAP
    return Block(width, y - GAP, parts, kind="seq")


def _columns(labelled: Sequence[tuple[str, Sequence[Task]]]) -> Block:
    seqs = [(label, _sequence(tasks)) for label, tasks in labelled]
    x = 0.0
    parts = []
    height = max((s.height for _, s in seqs), default=0)
    for label, seq in seqs:
        seq.label = label
        parts.append((x, 0.0, seq))
        x += seq.width + GAP
    return Block(max(x - GAP, BOX_W), height, parts, kind="columns")


def _layout(task: Task) -> Block:
    lists = getattr(task, "task_lists", ())
    if not getattr(task, "flowable", False) or not lists:
        return _task_box(task)
    type_name = type(task).__name__
    if type_name == "If":
        branches = [("then", task.then), ("else", getattr(task, "else_", []) or [])]  # type: ignore[attr-defined]
        body = _columns(branches)
        kind = "branches"
    elif type_name in ("Parallel", "EachParallel"):
        body = _columns([("", [child]) for child in task.tasks])  # type: ignore[attr-defined]
        kind = "parallel"
    else:
        main = [c for name in lists if name != "errors" for c in (getattr(task, name) or [])]
        body = _sequence(main)
        kind = "group"
    header = BOX_H
    width = max(body.width + 2 * PAD, BOX_W + 2 * PAD)
    height = header + GAP + body.height + PAD + (GAP if kind == "branches" else 0)
    block = Block(width, height, [((width - body.width) / 2, header + GAP, body)], kind=kind)
    block.task = task
    return block


def _draw(block: Block, x: float, y: float, out: list[str]) -> None:
    if block.kind == "task":
        assert block.task is not None
        _draw_box(block.task, x, y, out)
        return
    if block.kind == "seq":
        previous: tuple[float, float] | None = None
        for dx, dy, child in block.parts:
            cx = x + dx + child.width / 2
            if previous is not None:
                out.append(_arrow(previous[0], previous[1], cx, y + dy))
            _draw(child, x + dx, y + dy, out)
            previous = (cx, y + dy + child.height)
        return
    if block.kind == "columns":
        for dx, dy, child in block.parts:
            if child.label:
                out.append(
                    f'<text class="branch" x="{x + dx + child.width / 2 + 7:.1f}" y="{y + dy - 6:.1f}"'
                    f">{_t(child.label)}</text>"
                )
            if not child.parts:
                out.append(
                    f'<text class="empty" x="{x + dx + child.width / 2:.1f}" y="{y + dy + 16:.1f}"'
                    ' text-anchor="middle">(nothing)</text>'
                )
            _draw(child, x + dx, y + dy, out)
        return
    # a flowable task: a frame with its header and its body
    task = block.task
    assert task is not None
    out.append(
        f'<rect class="frame frame-{block.kind}" x="{x:.1f}" y="{y:.1f}" width="{block.width:.1f}"'
        f' height="{block.height:.1f}" rx="10"/>'
    )
    _draw_box(task, x + (block.width - BOX_W) / 2, y, out, flowable=True)
    dx, dy, body = block.parts[0]
    top = (x + block.width / 2, y + BOX_H)
    if body.kind == "columns":
        for cdx, cdy, col in body.parts:
            cx = x + dx + cdx + col.width / 2
            out.append(_arrow(top[0], top[1], cx, y + dy + cdy, label=""))
    else:
        out.append(_arrow(top[0], top[1], x + dx + body.width / 2, y + dy))
    _draw(body, x + dx, y + dy, out)


def _draw_box(task: Task, x: float, y: float, out: list[str], flowable: bool = False) -> None:
    type_name = str(getattr(task, "type", type(task).__name__))
    short_type = type_name.rsplit(".", 1)[-1]
    cls = "node flowable" if flowable else "node"
    if getattr(task, "disabled", False):
        cls += " disabled"
    detail = short_type
    if type(task).__name__ == "If":
        detail = f"If {getattr(task, 'condition', '')}"
    out.append(
        f'<g class="{cls}" data-task="{_t(task.id)}"><title>{_t(task.id)} ({_t(type_name)})</title>'
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{BOX_W}" height="{BOX_H}" rx="7"/>'
        f'<text class="id" x="{x + 10:.1f}" y="{y + 17:.1f}">{_t(_short(task.id, 30))}</text>'
        f'<text class="type" x="{x + 10:.1f}" y="{y + 33:.1f}">{_t(_short(detail, 34))}</text></g>'
    )


def _arrow(x1: float, y1: float, x2: float, y2: float, label: str = "") -> str:
    if abs(x1 - x2) < 0.5:
        path = f"M{x1:.1f},{y1:.1f} L{x2:.1f},{y2 - 2:.1f}"
    else:
        mid = (y1 + y2) / 2
        path = f"M{x1:.1f},{y1:.1f} C{x1:.1f},{mid:.1f} {x2:.1f},{mid:.1f} {x2:.1f},{y2 - 2:.1f}"
    return f'<path class="edge" d="{path}" marker-end="url(#arrow)"/>'


def topology(
    tasks: Sequence[Task], errors: Sequence[Task] = (), finally_: Sequence[Task] = ()
) -> Markup:
    """The flow's tasks top to bottom; If branches side by side; errors/finally beside."""
    sections = [("tasks", _sequence(tasks))]
    if errors:
        sections.append(("errors", _sequence(errors)))
    if finally_:
        sections.append(("finally", _sequence(finally_)))
    out: list[str] = []
    x = 20.0
    height = 0.0
    for name, block in sections:
        out.append(f'<text class="section" x="{x:.1f}" y="20">{_t(name)}</text>')
        _draw(block, x, 40, out)
        x += block.width + 60
        height = max(height, block.height)
    width, total = x - 40, height + 60
    return Markup(
        f'<svg class="topology" xmlns="http://www.w3.org/2000/svg" width="{width:.0f}"'
        f' height="{total:.0f}" viewBox="0 0 {width:.0f} {total:.0f}" role="img"'
        ' aria-label="task topology"><defs><marker id="arrow" viewBox="0 0 10 10" refX="9"'
        ' refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#8a97a8"/></marker></defs>' + "".join(out) + "</svg>"
    )


# -- Gantt ------------------------------------------------------------------------------------------
def gantt(runs: Sequence[Any], now: datetime) -> Markup:
    """One bar per task run from its start to its end (or now), coloured by state."""
    started = [r for r in runs if r.start_date is not None]
    if not started:
        return Markup('<p class="muted">No task has started yet.</p>')
    t0 = min(r.start_date for r in started)
    t1 = max((r.end_date or now) for r in started)
    span = max((t1 - t0).total_seconds(), 0.001)
    label_w, chart_w, row_h = 230, 620, 26
    height = row_h * len(runs) + 34
    out = []
    for step in range(6):
        frac = step / 5
        gx = label_w + frac * chart_w
        out.append(f'<line class="grid" x1="{gx:.1f}" y1="0" x2="{gx:.1f}" y2="{height - 22}"/>')
        out.append(
            f'<text class="axis" x="{gx:.1f}" y="{height - 6}" text-anchor="middle">'
            f"{_duration(span * frac)}</text>"
        )
    parents = {run.path: run.parent_path for run in runs}

    def depth(path: str | None) -> int:
        level = 0
        while path and parents.get(path) and level < 20:
            path = parents[path]
            level += 1
        return level

    for i, run in enumerate(runs):
        y = i * row_h + 4
        indent = 12 * depth(run.path)
        label = _short(run.task_id + (f" [{run.value}]" if run.value else ""), 32)
        out.append(f'<text class="label" x="{6 + indent}" y="{y + 16}">{_t(label)}</text>')
        if run.start_date is None:
            continue
        start = (run.start_date - t0).total_seconds()
        end = ((run.end_date or now) - t0).total_seconds()
        bx = label_w + start / span * chart_w
        bw = max(2.0, (end - start) / span * chart_w)
        attempts = len(run.attempts or [])
        out.append(
            f'<g class="bar" data-state="{_t(run.state)}"><title>{_t(run.task_id)}: {_t(run.state)},'
            f" {_duration(end - start)}, {attempts} attempt(s)</title>"
            f'<rect x="{bx:.1f}" y="{y + 3}" width="{bw:.1f}" height="{row_h - 8}" rx="3"'
            f' fill="{colour(run.state)}"/></g>'
        )
        out.append(
            f'<text class="dur" x="{bx + bw + 5:.1f}" y="{y + 16}">{_duration(end - start)}</text>'
        )
    total_w = label_w + chart_w + 70
    return Markup(
        f'<svg class="gantt" xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{height}"'
        f' viewBox="0 0 {total_w} {height}" role="img" aria-label="task runs over time">'
        + "".join(out)
        + "</svg>"
    )


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


# -- charts -----------------------------------------------------------------------------------------
def _nice_max(value: float) -> float:
    """A round axis top at or above ``value`` (at least 4, so quarter ticks are whole)."""
    if value <= 4:
        return 4
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _count(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    return f"{value:,.0f}"


def month_bars(months: Sequence[dict[str, Any]]) -> Markup:
    """Rows per month; a month with no load is a hatched red column marked "missing"."""
    if not months:
        return Markup('<p class="muted">No month in the range.</p>')
    top = _nice_max(max((m.get("rows") or 0) for m in months))
    chart_h, bar_w, gap, left = 220, 42, 12, 64
    width = left + len(months) * (bar_w + gap) + 20
    out = [
        '<defs><pattern id="hatch" width="8" height="8" patternUnits="userSpaceOnUse"'
        ' patternTransform="rotate(45)"><rect width="8" height="8" fill="#fdecec"/>'
        '<line x1="0" y1="0" x2="0" y2="8" stroke="#d2453f" stroke-width="3"/></pattern></defs>'
    ]
    for step in range(5):
        value = top * step / 4
        gy = 20 + chart_h - chart_h * step / 4
        out.append(
            f'<line class="grid" x1="{left - 4}" y1="{gy:.1f}" x2="{width - 10}" y2="{gy:.1f}"/>'
        )
        out.append(
            f'<text class="axis" x="{left - 8}" y="{gy + 4:.1f}" text-anchor="end">{_count(value)}</text>'
        )
    for i, month in enumerate(months):
        x = left + i * (bar_w + gap)
        rows = month.get("rows")
        label = str(month.get("month", ""))
        state = month.get("status") or ("ok" if month.get("loaded") else "missing")
        out.append(
            f'<text class="axis" x="{x + bar_w / 2:.1f}" y="{chart_h + 38}" text-anchor="middle">'
            f"{_t(label[2:] if len(label) == 7 else label)}</text>"
        )
        if not month.get("loaded"):
            out.append(
                f'<g class="month missing" data-month="{_t(label)}"><title>{_t(label)}: not loaded</title>'
                f'<rect x="{x}" y="20" width="{bar_w}" height="{chart_h}" fill="url(#hatch)" rx="3"/>'
                f'<text class="missing-label" x="{x + bar_w / 2:.1f}" y="{20 + chart_h / 2:.1f}"'
                f' text-anchor="middle" transform="rotate(-90 {x + bar_w / 2:.1f} {20 + chart_h / 2:.1f})">'
                "missing</text></g>"
            )
            continue
        h = chart_h * (rows or 0) / top
        fill = {"ok": "#2f7fd8", "unverified": "#7aa7d9"}.get(str(state), "#d9961a")
        out.append(
            f'<g class="month loaded" data-month="{_t(label)}" data-rows="{rows}"><title>{_t(label)}:'
            f" {rows:,} rows ({_t(state)})</title>"
            f'<rect x="{x}" y="{20 + chart_h - h:.1f}" width="{bar_w}" height="{max(h, 1):.1f}"'
            f' fill="{fill}" rx="3"/>'
            f'<text class="value" x="{x + bar_w / 2:.1f}" y="{14 + chart_h - h:.1f}"'
            f' text-anchor="middle">{_count(rows or 0)}</text></g>'
        )
    height = chart_h + 50
    return Markup(
        f'<svg class="bars" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" role="img" aria-label="rows per month">'
        + "".join(out)
        + "</svg>"
    )


def stacked_days(days: Sequence[dict[str, Any]], states: Sequence[str]) -> Markup:
    """Executions per day, stacked by state."""
    totals = [sum(d["counts"].values()) for d in days]
    top = _nice_max(max(totals, default=0))
    chart_h, left = 180, 48
    bar_w = max(8, min(36, int(760 / max(len(days), 1)) - 6))
    width = left + len(days) * (bar_w + 6) + 20
    out = []
    for step in range(5):
        gy = 10 + chart_h - chart_h * step / 4
        out.append(
            f'<line class="grid" x1="{left - 4}" y1="{gy:.1f}" x2="{width - 10}" y2="{gy:.1f}"/>'
        )
        out.append(
            f'<text class="axis" x="{left - 8}" y="{gy + 4:.1f}" text-anchor="end">{_count(top * step / 4)}</text>'
        )
    order = [s for s in STATE_COLOURS if s in states] + [
        s for s in states if s not in STATE_COLOURS
    ]
    for i, day in enumerate(days):
        x = left + i * (bar_w + 6)
        y = 10 + chart_h
        for state in order:
            count = day["counts"].get(state, 0)
            if not count:
                continue
            h = chart_h * count / top
            y -= h
            out.append(
                f'<rect x="{x}" y="{y:.1f}" width="{bar_w}" height="{h:.1f}" fill="{colour(state)}">'
                f"<title>{_t(day['day'])}: {count} {_t(state)}</title></rect>"
            )
        if len(days) <= 16 or i % max(1, len(days) // 10) == 0:
            out.append(
                f'<text class="axis" x="{x + bar_w / 2:.1f}" y="{chart_h + 26}" text-anchor="middle">'
                f"{_t(day['day'][5:])}</text>"
            )
    height = chart_h + 34
    return Markup(
        f'<svg class="stacked" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" role="img" aria-label="executions per day by state">'
        + "".join(out)
        + "</svg>"
    )
