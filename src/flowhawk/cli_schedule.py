"""``flowhawk backfill ...`` and ``flowhawk scheduler``.

``flowhawk backfill NAMESPACE/ID --start ... --end ...`` creates a backfill, while
``flowhawk backfill list|show|pause|resume|cancel`` manage them: the group below sends any
first argument that is not one of its subcommands to ``create``.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from flowhawk.engine.service import Engine
    from flowhawk.store.scheduling import BackfillRecord, Progress


class _DefaultToCreate(TyperGroup):
    """A group whose first positional argument may be a flow (``NAMESPACE/ID``) instead of a
    subcommand: then the arguments go to ``create``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        first = next((a for a in args if not a.startswith("-")), None)
        if first is not None and first not in self.commands:
            args = ["create", *args]
        elif first is None and args and not {"--help", "-h"} & set(args):
            args = ["create", *args]
        return super().parse_args(ctx, args)


backfill_app = typer.Typer(
    cls=_DefaultToCreate,
    help=(
        "Replay a Schedule trigger's ticks: flowhawk backfill NAMESPACE/ID --start ISO --end ISO;"
        " and list, show, pause, resume, cancel backfills."
    ),
    no_args_is_help=True,
)


def _cli() -> Any:
    import flowhawk.cli as cli

    return cli


def _fail(message: str, code: int = 1) -> Any:
    return _cli().fail(message, code)


def _engine() -> Engine:
    return _cli().engine()  # type: ignore[no-any-return]


@backfill_app.command("create")
def backfill_create(
    flow: Annotated[str, typer.Argument(help="NAMESPACE/ID of a deployed flow.")],
    start: Annotated[
        str, typer.Option("--start", help="First instant (ISO-8601 date or date-time).")
    ],
    end: Annotated[
        str, typer.Option("--end", help="Last instant; a date alone means the end of that day.")
    ],
    trigger: Annotated[
        str | None, typer.Option("--trigger", help="Schedule trigger id (needed when several).")
    ] = None,
    labels: Annotated[list[str] | None, typer.Option("--label", "-l", help="key=value")] = None,
    inputs: Annotated[list[str] | None, typer.Option("--input", "-i", help="key=value")] = None,
    parallelism: Annotated[
        int, typer.Option("--parallelism", help="Executions of this backfill running at once.")
    ] = 1,
    only_missing: Annotated[
        bool,
        typer.Option(
            "--only-missing", help="Skip ticks with a SUCCESS/WARNING execution or one under way."
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan, create nothing.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Show progress until the end; exit 1 if any failed.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the backfill as JSON.")] = False,
) -> None:
    """Create a backfill (the default command: flowhawk backfill NAMESPACE/ID ...)."""
    from flowhawk.engine import backfill as bf
    from flowhawk.errors import FlowhawkError
    from flowhawk.flow.loader import FlowValidationError

    cli = _cli()
    namespace, flow_id = cli._split_ref(flow)
    request = bf.BackfillRequest(
        namespace=namespace,
        flow_id=flow_id,
        start=start,
        end=end,
        trigger_id=trigger,
        labels=cli.parse_pairs(labels, "--label"),
        inputs=cli.parse_pairs(inputs, "--input"),
        parallelism=parallelism,
        only_missing=only_missing,
    )
    if parallelism < 1:
        _fail(f"--parallelism must be at least 1, got {parallelism}")
    eng = _engine()
    try:
        planned = bf.plan(eng, request)
        for note in planned.notes:
            typer.echo(f"note: {note}", err=True)
        record = None if dry_run else bf.create(eng.repo, planned)
    except FlowValidationError as exc:
        eng.close()
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        _fail(f"flow {flow} does not validate; nothing created")
    except FlowhawkError as exc:
        eng.close()
        _fail(str(exc))
    if dry_run:
        for line in planned.lines():
            typer.echo(line)
    if record is None:
        eng.close()
        typer.echo(planned.summary())
        return
    if as_json and not wait:
        progress = bf.status(eng.repo, record.id)[1]
        typer.echo(json.dumps(bf.describe(record, progress)))
    else:
        typer.echo(
            f"backfill {record.id}: {planned.summary()} of {flow} trigger {record.trigger_id}"
            f" from {planned.start.isoformat()} to {planned.end.isoformat()},"
            f" parallelism {record.parallelism}"
        )
    if not wait:
        eng.close()
        return
    ok = _wait(eng, record)
    eng.close()
    raise typer.Exit(0 if ok else 1)


def _wait(eng: Engine, record: BackfillRecord) -> bool:
    """Show progress until every execution ended; run workers here when none is alive."""
    from flowhawk.engine import backfill as bf
    from flowhawk.engine.worker import WorkerPool, live_workers

    pool = None
    if live_workers(eng.repo) == 0:
        limit = None
        flow, _ = eng.flow(record.namespace, record.flow_id)
        if flow.concurrency is not None:
            limit = flow.concurrency.limit
        threads = min(record.parallelism, limit or record.parallelism)
        typer.echo(f"no live worker: running {threads} worker thread(s) in this process", err=True)
        pool = WorkerPool(eng, threads=threads, kind="backfill").start()
    try:
        progress = _show_progress(eng, record)
    finally:
        if pool is not None:
            pool.stop(timeout=30)
    final, _ = bf.status(eng.repo, record.id)
    typer.echo(f"backfill {record.id} {final.state}: {_counts(progress)}")
    return bf.succeeded(progress)


def _show_progress(eng: Engine, record: BackfillRecord) -> Progress:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    from flowhawk.engine import backfill as bf

    console = Console(stderr=True)
    with Bar(
        TextColumn("[bold]backfill"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=not console.is_terminal,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task("", total=record.ticks)

        def show(progress: Progress) -> None:
            ended = progress.done + progress.failed + progress.cancelled
            bar.update(task, completed=ended, total=progress.total, description=_counts(progress))

        return bf.wait(eng.repo, record.id, on_progress=show)


def _counts(progress: Progress) -> str:
    text = (
        f"done {progress.done}, failed {progress.failed}, running {progress.running},"
        f" queued {progress.queued}, pending {progress.pending}"
    )
    if progress.cancelled:
        text += f", cancelled {progress.cancelled}"
    return text


@backfill_app.command("list")
def backfill_list(
    flow: Annotated[str | None, typer.Option("--flow", help="NAMESPACE/ID")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 50,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List backfills, newest first, with their progress."""
    from flowhawk.engine import backfill as bf

    namespace = flow_id = None
    if flow:
        namespace, flow_id = _cli()._split_ref(flow)
    eng = _engine()
    rows = bf.list_with_progress(eng.repo, namespace, flow_id, limit)
    eng.close()
    if as_json:
        typer.echo(json.dumps([bf.describe(r, p) for r, p in rows]))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "flow", "trigger", "state", "range", "ticks", "progress")
    for record, progress in rows:
        data = bf.describe(record, progress)
        table.add_row(
            record.id,
            f"{record.namespace}/{record.flow_id}",
            record.trigger_id,
            record.state,
            f"{data['start']} .. {data['end']}",
            str(record.ticks),
            _counts(progress),
        )
    Console().print(table)


@backfill_app.command("show")
def backfill_show(
    backfill_id: str, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """One backfill: its range, state and progress (done, failed, running, queued, pending)."""
    from flowhawk.engine import backfill as bf

    eng = _engine()
    try:
        record, progress = bf.status(eng.repo, backfill_id)
    except bf.BackfillError as exc:
        eng.close()
        _fail(str(exc))
    eng.close()
    data = bf.describe(record, progress)
    if as_json:
        typer.echo(json.dumps(data))
        return
    typer.echo(
        f"backfill {record.id} of {record.namespace}/{record.flow_id} ({record.trigger_id}): {record.state}"
    )
    typer.echo(f"range: {data['start']} .. {data['end']} ({record.timezone})")
    typer.echo(
        f"ticks: {record.ticks}" + (f" ({record.skipped} skipped)" if record.skipped else "")
    )
    typer.echo(f"parallelism: {record.parallelism}")
    if record.labels:
        typer.echo("labels: " + ", ".join(f"{k}={v}" for k, v in record.labels.items()))
    typer.echo(f"progress: {_counts(progress)}")


def _change(backfill_id: str, action: str) -> None:
    from flowhawk.engine import backfill as bf

    eng = _engine()
    try:
        if action == "cancel":
            count = bf.cancel(eng.repo, backfill_id)
            message = (
                f"backfill {backfill_id} cancelled ({count} execution(s) not started cancelled)"
            )
        elif action == "pause":
            bf.pause(eng.repo, backfill_id)
            message = f"backfill {backfill_id} paused (running executions finish)"
        else:
            bf.resume(eng.repo, backfill_id)
            message = f"backfill {backfill_id} resumed"
    except bf.BackfillError as exc:
        eng.close()
        _fail(str(exc))
    eng.close()
    typer.echo(message)


@backfill_app.command("pause")
def backfill_pause(backfill_id: str) -> None:
    """Start none of its executions until resumed (running ones finish)."""
    _change(backfill_id, "pause")


@backfill_app.command("resume")
def backfill_resume(backfill_id: str) -> None:
    """Let workers start its executions again."""
    _change(backfill_id, "resume")


@backfill_app.command("cancel")
def backfill_cancel(backfill_id: str) -> None:
    """Cancel its executions that have not started (running ones finish)."""
    _change(backfill_id, "cancel")


def scheduler_command(
    interval: Annotated[
        float, typer.Option("--interval", min=0.05, help="Longest sleep between passes (s).")
    ] = 1.0,
) -> None:
    """Run the scheduler alone: fire Schedule triggers until SIGTERM (run several safely)."""
    import logging
    import threading

    from flowhawk.engine.scheduler import Scheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    eng = _engine()
    stop = threading.Event()
    _cli()._install_sigterm(stop)
    typer.echo(f"scheduler running on {eng.repo.describe()}", err=not sys.stdout.isatty())
    sys.stdout.flush()
    Scheduler(eng, interval=interval).run(stop)
    typer.echo("scheduler stopped")
    eng.close()
