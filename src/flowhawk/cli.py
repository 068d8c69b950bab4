"""The ``flowhawk`` command line (typer + rich). Heavy imports stay inside commands."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from flowhawk.config import Settings
    from flowhawk.engine.logs import LogLine
    from flowhawk.engine.service import Engine

app = typer.Typer(
    help="flowhawk: run Kestra-dialect YAML flows on PostgreSQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
flow_app = typer.Typer(help="Validate, deploy and list flows.", no_args_is_help=True)
executions_app = typer.Typer(help="List, show, kill and restart executions.", no_args_is_help=True)
app.add_typer(flow_app, name="flow")
app.add_typer(executions_app, name="executions")

_state: dict[str, Any] = {"config": None}

LEVEL_STYLE = {"TRACE": "dim", "DEBUG": "dim", "INFO": "green", "WARN": "yellow", "ERROR": "red"}


@app.callback()
def _main(
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Config file (default ./flowhawk.yaml when present)."),
    ] = None,
) -> None:
    _state["config"] = config


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def settings() -> Settings:
    from flowhawk.config import ConfigError, load_settings

    try:
        return load_settings(_state["config"])
    except ConfigError as exc:
        fail(str(exc))


def engine() -> Engine:
    from flowhawk.engine.service import Engine
    from flowhawk.errors import FlowhawkError

    try:
        return Engine(settings())
    except FlowhawkError as exc:
        fail(str(exc))


def parse_pairs(pairs: list[str] | None, what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"{what} must be written key=value, got {pair!r}")
        result[key.strip()] = value
    return result


def console_sink(stream: Any = None) -> Any:
    """Log lines to stdout: coloured on a terminal, one plain line each otherwise."""
    out = stream or sys.stdout
    if out.isatty():
        from rich.console import Console
        from rich.text import Text

        console = Console(file=out, highlight=False)

        def pretty(line: LogLine) -> None:
            where = (
                f"{line.task_id}[{line.attempt}]"
                if line.task_id and line.attempt
                else (line.task_id or "-")
            )
            text = Text()
            text.append(line.ts.astimezone().strftime("%H:%M:%S.%f")[:-3] + " ", style="dim")
            text.append(f"{line.level:<5} ", style=LEVEL_STYLE.get(line.level, ""))
            text.append(f"{where} ", style="cyan")
            text.append(line.message)
            console.print(text, soft_wrap=True)

        return pretty

    def plain(line: LogLine) -> None:
        where = (
            f"{line.task_id}[{line.attempt}]"
            if line.task_id and line.attempt
            else (line.task_id or "-")
        )
        message = line.message.replace("\r", "").replace("\n", "\\n")
        out.write(f"{line.ts.isoformat()} {line.level} {where} {message}\n")
        out.flush()

    return plain


def parse_datetime(text: str, what: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        fail(f"{what}: not an ISO-8601 date or date-time: {text!r}")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# -- flow --------------------------------------------------------------------------------
@flow_app.command("validate")
def flow_validate(
    paths: Annotated[list[Path], typer.Argument(help="Flow files or folders.")],
) -> None:
    """Report every problem of every file as file:line: key.path: message."""
    from flowhawk.flow.loader import validate_source

    cfg = settings()
    problems = 0
    files = _flow_files(paths)
    for path in files:
        found = validate_source(path.read_text(), str(path), cfg.plugin_defaults)
        for problem in found:
            typer.echo(str(problem))
        problems += len(found)
    if problems:
        typer.echo(f"{problems} problem(s) in {len(files)} file(s)", err=True)
        raise typer.Exit(1)
    typer.echo(f"{len(files)} flow(s) valid")


def _flow_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted([*path.glob("*.yaml"), *path.glob("*.yml")]))
        elif path.exists():
            files.append(path)
        else:
            fail(f"{path}: no such file")
    return files


@flow_app.command("deploy")
def flow_deploy(
    paths: Annotated[list[Path], typer.Argument(help="Flow files or folders.")],
) -> None:
    """Store flows (a new revision when the source changed)."""
    from flowhawk.errors import FlowhawkError
    from flowhawk.flow.loader import FlowValidationError

    eng = engine()
    failed = False
    for path in _flow_files(paths):
        try:
            flow, revision, changed = eng.deploy_file(path)
        except FlowValidationError as exc:
            for problem in exc.problems:
                typer.echo(str(problem), err=True)
            failed = True
            continue
        except FlowhawkError as exc:
            typer.echo(f"{path}: {exc}", err=True)
            failed = True
            continue
        note = "deployed" if changed else "unchanged"
        typer.echo(f"{flow.namespace}/{flow.id} revision {revision} {note}")
    eng.close()
    if failed:
        raise typer.Exit(1)


@flow_app.command("list")
def flow_list(
    namespace: Annotated[str | None, typer.Option(help="Only this namespace (and below).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List deployed flows."""
    eng = engine()
    flows = eng.repo.list_flows(namespace)
    eng.close()
    if as_json:
        typer.echo(
            json.dumps(
                [{"namespace": f.namespace, "id": f.id, "revision": f.revision} for f in flows]
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("namespace", "id", "revision", "updated")
    for f in flows:
        table.add_row(
            f.namespace, f.id, str(f.revision), f.created_at.isoformat() if f.created_at else ""
        )
    Console().print(table)


@flow_app.command("delete")
def flow_delete(ref: Annotated[str, typer.Argument(help="NAMESPACE/ID")]) -> None:
    """Delete a deployed flow (its revisions and executions are kept)."""
    namespace, flow_id = _split_ref(ref)
    eng = engine()
    deleted = eng.repo.delete_flow(namespace, flow_id)
    eng.close()
    if not deleted:
        fail(f"flow {ref} not found")
    typer.echo(f"{ref} deleted")


@flow_app.command("schema")
def flow_schema() -> None:
    """Print the JSON Schema of the flow dialect (for editor completion)."""
    from flowhawk.flow.schema import flow_json_schema

    typer.echo(json.dumps(flow_json_schema(), indent=2))


def _split_ref(ref: str) -> tuple[str, str]:
    namespace, sep, flow_id = ref.rpartition("/")
    if not sep or not namespace or not flow_id:
        fail(f"expected NAMESPACE/ID, got {ref!r}")
    return namespace, flow_id


# -- run -----------------------------------------------------------------------------------
@app.command("run")
def run(
    target: Annotated[str, typer.Argument(help="A flow file, or NAMESPACE/ID of a deployed flow.")],
    inputs: Annotated[list[str] | None, typer.Option("--input", "-i", help="key=value")] = None,
    labels: Annotated[list[str] | None, typer.Option("--label", "-l", help="key=value")] = None,
    trigger_date: Annotated[
        str | None, typer.Option("--trigger-date", help="Run as the tick of this date (ISO).")
    ] = None,
    trigger: Annotated[
        str | None, typer.Option("--trigger", help="Apply this trigger's inputs and labels.")
    ] = None,
) -> None:
    """Run a flow in this process to its end, streaming its logs."""
    from flowhawk.errors import FlowhawkError
    from flowhawk.flow.loader import FlowValidationError

    given_inputs = parse_pairs(inputs, "--input")
    given_labels = parse_pairs(labels, "--label")
    date = parse_datetime(trigger_date, "--trigger-date") if trigger_date else None
    path = Path(target)
    if path.suffix in (".yaml", ".yml") and not path.is_file():
        fail(f"{target}: no such flow file")
    eng = engine()
    try:
        if path.exists() and path.is_file():
            flow, revision, _ = eng.deploy_file(path)
        else:
            namespace, flow_id = _split_ref(target)
            flow, revision = eng.flow(namespace, flow_id)
        if trigger and date is None:
            date = datetime.now(UTC)
        started = eng.create_execution(
            flow,
            revision,
            inputs=given_inputs,
            labels=given_labels,
            trigger_id=trigger,
            trigger_date=date,
        )
    except FlowValidationError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        eng.close()
        raise typer.Exit(1) from None
    except FlowhawkError as exc:
        eng.close()
        fail(str(exc))
    typer.echo(f"execution {started.execution.id}", err=not sys.stdout.isatty())
    state = eng.run_to_end(started, console=console_sink())
    eng.close()
    typer.echo(f"execution {started.execution.id} {state}")
    raise typer.Exit(0 if state in ("SUCCESS", "WARNING") else 1)


# -- executions ----------------------------------------------------------------------------
@executions_app.command("list")
def executions_list(
    flow: Annotated[str | None, typer.Option("--flow", help="NAMESPACE/ID")] = None,
    state: Annotated[list[str] | None, typer.Option("--state", help="State (repeatable).")] = None,
    labels: Annotated[list[str] | None, typer.Option("--label", help="key=value")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Only a JSON array on stdout.")] = False,
) -> None:
    """List executions, newest first."""
    namespace = flow_id = None
    if flow:
        namespace, flow_id = _split_ref(flow)
    eng = engine()
    rows = eng.repo.list_executions(
        namespace=namespace,
        flow_id=flow_id,
        states=[s.upper() for s in state or []],
        labels=parse_pairs(labels, "--label") or None,
        limit=limit if limit is not None else (None if as_json else 50),
    )
    eng.close()
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in rows]))
        return
    from rich.console import Console
    from rich.table import Column, Table

    # ids are never shortened: users copy them into `executions show/kill/restart`
    id_column = Column("id", no_wrap=True, min_width=max((len(r.id) for r in rows), default=2))
    table = Table(id_column, "flow", "state", "trigger date", "start", "end", "labels")
    for r in rows:
        table.add_row(
            r.id,
            f"{r.namespace}/{r.flow_id}",
            r.state,
            r.trigger_date.isoformat() if r.trigger_date else "",
            r.start_date.strftime("%Y-%m-%d %H:%M:%S") if r.start_date else "",
            r.end_date.strftime("%Y-%m-%d %H:%M:%S") if r.end_date else "",
            ", ".join(f"{k}={v}" for k, v in (r.labels or {}).items()),
        )
    Console().print(table)


@executions_app.command("show")
def executions_show(
    execution_id: str, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Show one execution with its task runs."""
    from flowhawk.engine.service import NotFound

    eng = engine()
    try:
        execution = eng.execution(execution_id)
    except NotFound as exc:
        eng.close()
        fail(str(exc))
    runs = eng.repo.task_runs(execution_id)
    eng.close()
    data = execution.to_json()
    data["taskRuns"] = [r.to_json() for r in runs]
    if as_json:
        typer.echo(json.dumps(data, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]{execution.id}[/] {execution.namespace}/{execution.flow_id} rev {execution.flow_revision}: [bold]{execution.state}[/]"
    )
    for key in ("labels", "inputs", "trigger", "outputs", "error"):
        if data.get(key):
            console.print(f"{key}: {json.dumps(data[key], default=str)}")
    table = Table("task", "path", "state", "attempts", "start", "end")
    for r in runs:
        table.add_row(
            r.task_id,
            r.path,
            r.state,
            str(len(r.attempts)),
            r.start_date.strftime("%H:%M:%S") if r.start_date else "",
            r.end_date.strftime("%H:%M:%S") if r.end_date else "",
        )
    console.print(table)


@executions_app.command("kill")
def executions_kill(execution_id: str) -> None:
    """Stop a running execution (its subprocesses included)."""
    eng = engine()
    ok = eng.repo.request_kill(execution_id)
    eng.close()
    if not ok:
        fail(f"execution {execution_id} not found or already ended")
    typer.echo(f"kill requested for {execution_id}")


@executions_app.command("restart")
def executions_restart(
    execution_id: str,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Run it here to its end.")] = True,
) -> None:
    """Re-run a failed execution from its failed task, same inputs and trigger date."""
    from flowhawk.engine.service import Started
    from flowhawk.errors import FlowhawkError

    eng = engine()
    try:
        execution = eng.prepare_restart(execution_id)
        flow, _ = eng.flow(execution.namespace, execution.flow_id)
    except FlowhawkError as exc:
        eng.close()
        fail(str(exc))
    typer.echo(f"execution {execution_id} restarted")
    if not wait:
        eng.close()
        return
    state = eng.run_to_end(Started(execution, flow, {}), console=console_sink())
    eng.close()
    typer.echo(f"execution {execution_id} {state}")
    raise typer.Exit(0 if state in ("SUCCESS", "WARNING") else 1)


@app.command("logs")
def logs(
    execution_id: str,
    level: Annotated[str | None, typer.Option(help="Minimum level.")] = None,
    task: Annotated[str | None, typer.Option(help="Only this task id.")] = None,
) -> None:
    """Print an execution's logs."""
    from flowhawk.engine.logs import LogLine

    eng = engine()
    if eng.repo.get_execution(execution_id) is None:
        eng.close()
        fail(f"execution {execution_id} not found")
    sink = console_sink()
    for rec in eng.repo.logs(execution_id, min_level=level, task_id=task):
        sink(
            LogLine(
                rec.execution_id,
                rec.task_run_id,
                rec.task_id,
                rec.attempt,
                rec.ts,
                rec.level,
                rec.message,
            )
        )
    eng.close()


# -- taxi --------------------------------------------------------------------------------
taxi_app = typer.Typer(
    help="NYC taxi data: verify loaded months, make synthetic months.", no_args_is_help=True
)
app.add_typer(taxi_app, name="taxi")


@taxi_app.command("verify")
def taxi_verify(
    taxi: Annotated[str, typer.Option("--taxi", help="green or yellow")],
    start: Annotated[str, typer.Option("--start", help="YYYY-MM")],
    end: Annotated[str, typer.Option("--end", help="YYYY-MM")],
    flow: Annotated[
        str | None,
        typer.Option("--flow", help="Take the database from this flow's pluginDefaults."),
    ] = None,
    recount: Annotated[
        bool, typer.Option("--recount", help="Download the sources again and count.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check that every month in the range is loaded, complete and without duplicate ids."""
    from flowhawk.errors import FlowhawkError
    from flowhawk.taxi.verify import verify_command

    try:
        code = verify_command(settings(), taxi, start, end, flow, recount, as_json)
    except FlowhawkError as exc:
        fail(str(exc))
    raise typer.Exit(code)


@taxi_app.command("synth")
def taxi_synth(
    out: Annotated[Path, typer.Option("--out", help="Folder to write the files into.")],
    taxi: Annotated[str, typer.Option("--taxi", help="green or yellow")] = "green",
    start: Annotated[str, typer.Option("--start", help="YYYY-MM")] = "2019-01",
    end: Annotated[str, typer.Option("--end", help="YYYY-MM")] = "2019-12",
    rows: Annotated[int, typer.Option("--rows", min=1, help="Rows per month.")] = 10000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Write deterministic synthetic months in the real files' layout (gzipped CSV)."""
    from flowhawk.taxi.synth import synth_main

    synth_main(out, taxi, start, end, rows, seed)


# -- long-running processes -------------------------------------------------------------
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _install_sigterm(stop: Any) -> None:
    import signal

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@app.command("worker")
def worker(
    threads: Annotated[int, typer.Option("--threads", min=1, help="Executions run at once.")] = 4,
) -> None:
    """Run a worker: claim executions from PostgreSQL and run them, until SIGTERM."""
    import threading

    from flowhawk.engine.worker import WorkerPool

    eng = engine()
    stop = threading.Event()
    _install_sigterm(stop)
    pool = WorkerPool(eng, threads).start()
    typer.echo(f"worker {pool.worker_id} running with {threads} thread(s) on {eng.repo.describe()}")
    while not stop.wait(0.5):
        pass
    typer.echo("stopping: running executions finish or are handed back")
    pool.stop()
    eng.close()


@app.command("server")
def server(
    host: Annotated[str, typer.Option(help="Address of the API and UI.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the API and UI.")] = 8080,
    threads: Annotated[int, typer.Option("--threads", min=1, help="Worker threads.")] = 4,
    no_scheduler: Annotated[bool, typer.Option("--no-scheduler", help="Run no scheduler.")] = False,
    flows: Annotated[
        list[Path] | None, typer.Option("--flows", help="Deploy these flow files/folders at start.")
    ] = None,
) -> None:
    """Run the scheduler, a worker pool and the API/UI in one process, until SIGTERM."""
    import threading

    from flowhawk.engine.worker import WorkerPool

    cfg = settings()
    if host not in LOOPBACK and not (cfg.server_username and cfg.server_password):
        fail(
            f"refusing to listen on {host} without credentials: set server.username and"
            " server.password in the config file (or FLOWHAWK_USERNAME / FLOWHAWK_PASSWORD),"
            " or listen on 127.0.0.1"
        )
    eng = engine()
    for path in _flow_files(flows or []):
        flow, revision, changed = eng.deploy_file(path)
        typer.echo(
            f"{flow.namespace}/{flow.id} revision {revision} {'deployed' if changed else 'unchanged'}"
        )
    stop = threading.Event()
    pool = WorkerPool(eng, threads, kind="server").start()
    sched_thread = None
    if not no_scheduler:
        from flowhawk.engine.scheduler import Scheduler

        scheduler = Scheduler(eng)
        sched_thread = threading.Thread(target=scheduler.run, args=(stop,), daemon=True)
        sched_thread.start()
    typer.echo(f"flowhawk server on http://{host}:{port} (state: {eng.repo.describe()})")
    try:
        from flowhawk.server.app import serve
    except ImportError:
        _install_sigterm(stop)
        while not stop.wait(0.5):
            pass
    else:
        serve(eng, host, port, stop)
    stop.set()
    typer.echo("stopping: running executions finish or are handed back")
    pool.stop()
    if sched_thread is not None:
        sched_thread.join(5)
    eng.close()


def _register_optional() -> None:
    """Commands whose modules live beside this one."""
    try:
        from flowhawk.cli_schedule import backfill_app, scheduler_command
    except ImportError:
        return
    app.add_typer(backfill_app, name="backfill")
    app.command("scheduler")(scheduler_command)


def main() -> None:
    _register_optional()
    try:
        app()
    except SystemExit as exit_:
        code = exit_.code
    else:
        code = 0
    _exit_now(code)


def _exit_now(code: Any) -> None:
    """Leave without the interpreter's final teardown.

    By the time a command returns, its work is committed, its threads joined and its
    connections closed; what is left is freeing thousands of modules and objects one by
    one, which measured 0.15-0.3 s of every ``flowhawk run`` on a 2-core machine. The
    atexit handlers still run and the standard streams are flushed first.
    """
    import atexit

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            status = status or 1
    os._exit(status)


if __name__ == "__main__":
    main()
